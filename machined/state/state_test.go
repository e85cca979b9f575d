package state

import (
	"errors"
	"os"
	"testing"
)

func TestConfigLifecycle(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Config(); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("fresh store: %v, want ErrNoConfig", err)
	}
	if err := s.SaveConfig([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveStaged([]byte("b")); err != nil {
		t.Fatal(err)
	}
	ok, err := s.PromoteStaged()
	if err != nil || !ok {
		t.Fatalf("PromoteStaged = %v, %v", ok, err)
	}
	got, err := s.Config()
	if err != nil || string(got) != "b" {
		t.Fatalf("after promote: %q %v", got, err)
	}
	if _, err := s.Staged(); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("staged after promote: %v", err)
	}
	st, _ := os.Stat(s.ConfigPath())
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("config mode %v", st.Mode().Perm())
	}
	if err := s.Wipe(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Config(); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("after wipe: %v", err)
	}
}
