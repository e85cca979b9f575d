package nodeconfig

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSaveLoadRoundTripAndMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "config")
	c := &Config{Context: "a", Contexts: map[string]*Context{"a": {Endpoints: []string{"10.0.0.1"}, CA: "Y2E=", Crt: "Y3J0", Key: "a2V5"}}}
	if err := c.Save(p); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	got, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	name, ctx, err := got.Current("")
	if err != nil || name != "a" || ctx.Endpoints[0] != "10.0.0.1" {
		t.Fatalf("Current = %q %+v %v", name, ctx, err)
	}
}

func TestLoadMissingIsEmpty(t *testing.T) {
	c, err := Load(filepath.Join(t.TempDir(), "none"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Current(""); !errors.Is(err, ErrNoContext) {
		t.Fatalf("Current on empty config: %v, want ErrNoContext", err)
	}
}

// TestLoadEmptyFileIsEmpty is the reproducer of a review finding: an empty
// $NODECONFIG (made by mktemp, say) failed every command with "EOF".
func TestLoadEmptyFileIsEmpty(t *testing.T) {
	for _, content := range []string{"", "\n  \n"} {
		p := filepath.Join(t.TempDir(), "config")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p)
		if err != nil {
			t.Fatalf("Load(%q): %v", content, err)
		}
		if _, _, err := c.Current(""); !errors.Is(err, ErrNoContext) {
			t.Fatalf("Current on an empty file: %v, want ErrNoContext", err)
		}
		// Merging into it and saving works, as with a missing file.
		c.Merge(&Config{Context: "a", Contexts: map[string]*Context{"a": {Endpoints: []string{"10.5.0.2"}}}}, false)
		if err := c.Save(p); err != nil {
			t.Fatal(err)
		}
		if again, err := Load(p); err != nil || again.Context != "a" {
			t.Fatalf("reload: %+v %v", again, err)
		}
	}
}

func TestParseRejectsUnknownField(t *testing.T) {
	if _, err := Parse([]byte("context: a\nbogus: 1\n"), "x"); err == nil {
		t.Fatal("unknown field accepted")
	}
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name        string
		replace     bool
		wantCurrent string
		wantNames   []string
	}{
		{"rename on conflict", false, "demo-1", []string{"demo", "demo-1", "other"}},
		{"replace", true, "demo", []string{"demo", "other"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Context: "other", Contexts: map[string]*Context{
				"demo": {Endpoints: []string{"old"}}, "other": {},
			}}
			in := &Config{Context: "demo", Contexts: map[string]*Context{"demo": {Endpoints: []string{"new"}}}}
			c.Merge(in, tt.replace)
			if c.Context != tt.wantCurrent {
				t.Fatalf("current = %q, want %q", c.Context, tt.wantCurrent)
			}
			if got := c.Names(); len(got) != len(tt.wantNames) {
				t.Fatalf("names = %v, want %v", got, tt.wantNames)
			}
			if c.Contexts[tt.wantCurrent].Endpoints[0] != "new" {
				t.Fatalf("merged context has %v", c.Contexts[tt.wantCurrent].Endpoints)
			}
		})
	}
}
