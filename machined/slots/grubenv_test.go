package slots

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEnvMatchesGrubEditenv reads what grub-editenv writes, and grub-editenv
// reads what FormatEnv writes.
func TestEnvMatchesGrubEditenv(t *testing.T) {
	if _, err := exec.LookPath("grub-editenv"); err != nil {
		t.Fatal("grub-editenv missing (hack/install-deps.sh test installs grub-common)")
	}
	p := filepath.Join(t.TempDir(), "grubenv")
	for _, args := range [][]string{{"create"}, {"set", "active=b", "trying=a"}} {
		if out, err := exec.Command("grub-editenv", append([]string{p}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("grub-editenv %v: %v: %s", args, err, out)
		}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	env, err := ParseEnv(b)
	if err != nil || env["active"] != "b" || env["trying"] != "a" || len(env) != 2 {
		t.Fatalf("ParseEnv = %v, %v", env, err)
	}
	delete(env, "trying")
	env["next"] = "a"
	out, err := FormatEnv(env)
	if err != nil || len(out) != EnvSize {
		t.Fatalf("FormatEnv = %d bytes, %v", len(out), err)
	}
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command("grub-editenv", p, "list").CombinedOutput()
	if err != nil || strings.TrimSpace(string(list)) != "active=b\nnext=a" {
		t.Fatalf("grub-editenv list = %q, %v", list, err)
	}
}

func TestEnvRefusals(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"short", []byte(envHeader)},
		{"no header", make([]byte, EnvSize)},
		{"line without =", append([]byte(envHeader+"garbage\n"), make([]byte, EnvSize-len(envHeader)-8)...)},
	} {
		if _, err := ParseEnv(tt.in); err == nil {
			t.Errorf("%s: ParseEnv accepted it", tt.name)
		}
	}
	if _, err := FormatEnv(map[string]string{"a=b": "c"}); err == nil {
		t.Error("FormatEnv accepted a name with '='")
	}
	if _, err := FormatEnv(map[string]string{"k": strings.Repeat("x", EnvSize)}); err == nil {
		t.Error("FormatEnv accepted more than the block holds")
	}
}
