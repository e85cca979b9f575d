package secrets

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestGenerateSaveLoad(t *testing.T) {
	b, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Validate(); err != nil {
		t.Fatalf("fresh bundle invalid: %v", err)
	}
	tokenRE := regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)
	if !tokenRE.MatchString(b.Secrets.MachineToken) {
		t.Fatalf("machine token %q has the wrong form", b.Secrets.MachineToken)
	}
	if b.Secrets.BootstrapToken != "" {
		t.Fatal("a Kubernetes bootstrap token was generated: kubelets get their certificates over the machine API")
	}
	if b.Certs.KubeletServing.Key == "" || b.Certs.KubeletServing.Crt == b.Certs.Kubernetes.Crt {
		t.Fatal("no kubelet-serving CA of its own")
	}
	p := filepath.Join(t.TempDir(), "secrets.yaml")
	if err := b.Save(p); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	got, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Certs.OS.Key != b.Certs.OS.Key || got.Secrets.MachineToken != b.Secrets.MachineToken {
		t.Fatal("round trip changed the bundle")
	}
}

func TestValidateFindsEveryProblem(t *testing.T) {
	b, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	b.Secrets.MachineToken = ""
	b.Certs.Etcd.Key = other.Certs.Etcd.Key
	b.Certs.OS.Crt = "!!!"
	err = b.Validate()
	if err == nil {
		t.Fatal("broken bundle validated")
	}
	for _, want := range []string{"secrets.machineToken", "certs.etcd: key does not match", "certs.os"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestLoadRejectsUnknownField(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(p, []byte("secrets:\n  bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("got %v", err)
	}
}

func TestTokensAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, err := Token()
		if err != nil {
			t.Fatal(err)
		}
		if seen[tok] {
			t.Fatalf("duplicate token %q", tok)
		}
		seen[tok] = true
	}
}
