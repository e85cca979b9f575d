package bundle

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testBundle writes a bundle of two parts into a new directory.
func testBundle(t *testing.T) (string, *Manifest) {
	t.Helper()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "vmlinuz"), "kernel bytes")
	writeFile(t, filepath.Join(src, "initramfs.xz"), "initramfs bytes")
	dir := filepath.Join(t.TempDir(), "bundle")
	m, err := Write(dir, Manifest{Version: "v0.18.0", CommitTime: time.Unix(2000, 0).UTC(), KubernetesVersion: "v1.36.3", Arch: "amd64"}, []Source{
		{Path: filepath.Join(src, "vmlinuz"), Kind: KindKernel},
		{Path: filepath.Join(src, "initramfs.xz"), Kind: KindInitramfs},
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir, m
}

// TestWriteLoadVerify: a written bundle loads back as written and
// verifies; a part changed, truncated or missing afterwards does not; a
// stale file of an earlier bundle is removed.
func TestWriteLoadVerify(t *testing.T) {
	dir, m := testBundle(t)
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != m.Version || len(got.Parts) != 2 || got.Parts[0].Size != int64(len("kernel bytes")) {
		t.Fatalf("loaded %+v, wrote %+v", got, m)
	}
	if err := got.Verify(dir); err != nil {
		t.Fatalf("a fresh bundle does not verify: %v", err)
	}
	if p, ok := got.Part(KindInitramfs); !ok || p.Name != "initramfs.xz" {
		t.Fatalf("initramfs part %+v %v", p, ok)
	}
	for _, tc := range []struct {
		name  string
		spoil func(dir string)
	}{
		{"a part changed, same size", func(dir string) { writeFile(t, filepath.Join(dir, "vmlinuz"), "kernel BYTES") }},
		{"a part truncated", func(dir string) { writeFile(t, filepath.Join(dir, "vmlinuz"), "kernel") }},
		{"a part missing", func(dir string) { os.Remove(filepath.Join(dir, "initramfs.xz")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, m := testBundle(t)
			tc.spoil(dir)
			if err := m.Verify(dir); !errors.Is(err, ErrDigest) {
				t.Fatalf("verify: %v, want ErrDigest", err)
			}
		})
	}
	t.Run("a stale file of an earlier bundle is removed", func(t *testing.T) {
		dir, m := testBundle(t)
		writeFile(t, filepath.Join(dir, "old-part"), "x")
		src := filepath.Join(t.TempDir(), "vmlinuz")
		writeFile(t, src, "kernel 2")
		if _, err := Write(dir, *m, []Source{{Path: src, Kind: KindKernel}}); err != nil {
			t.Fatal(err)
		}
		for _, gone := range []string{"old-part", "initramfs.xz"} {
			if _, err := os.Stat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
				t.Fatalf("%s survived a new bundle: %v", gone, err)
			}
		}
	})
}

// TestParseRefuses: a manifest that is not exactly what this build reads
// is refused with the field that is wrong.
func TestParseRefuses(t *testing.T) {
	const sum = "0000000000000000000000000000000000000000000000000000000000000000"
	part := `{"name":"vmlinuz","kind":"kernel","size":1,"sha256":"` + sum + `"}`
	for _, tc := range []struct {
		name, manifest, want string
	}{
		{"another format", `{"format":2,"version":"v1","arch":"amd64","parts":[` + part + `]}`, "format 2"},
		{"an unknown field", `{"format":1,"version":"v1","arch":"amd64","parts":[` + part + `],"extra":1}`, "unknown field"},
		{"no version", `{"format":1,"arch":"amd64","parts":[` + part + `]}`, "no version"},
		{"no parts", `{"format":1,"version":"v1","arch":"amd64","parts":[]}`, "no parts"},
		{"a path as a name", `{"format":1,"version":"v1","arch":"amd64","parts":[{"name":"../etc/passwd","kind":"kernel","size":1,"sha256":"` + sum + `"}]}`, "parts[0].name"},
		{"a name twice", `{"format":1,"version":"v1","arch":"amd64","parts":[` + part + `,` + part + `]}`, "appears twice"},
		{"an unknown kind", `{"format":1,"version":"v1","arch":"amd64","parts":[{"name":"x","kind":"firmware","size":1,"sha256":"` + sum + `"}]}`, "parts[0].kind"},
		{"a short digest", `{"format":1,"version":"v1","arch":"amd64","parts":[{"name":"x","kind":"kernel","size":1,"sha256":"abcd"}]}`, "parts[0].sha256"},
		{"not JSON", `version: v1`, "manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.manifest))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

// TestCheck: a bundle for another architecture is refused even with
// force; an older build is refused unless forced (releases by semantic
// version, other builds by commit time); the same or a newer one passes.
func TestCheck(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	for _, tc := range []struct {
		name    string
		bundle  Manifest
		running Running
		force   bool
		want    error
	}{
		{"newer release", Manifest{Version: "v0.19.0", Arch: "amd64"}, Running{Version: "v0.18.2", Arch: "amd64"}, false, nil},
		{"the same release", Manifest{Version: "v0.18.2", Arch: "amd64"}, Running{Version: "v0.18.2", Arch: "amd64"}, false, nil},
		{"older release", Manifest{Version: "v0.9.0", Arch: "amd64"}, Running{Version: "v0.18.2", Arch: "amd64"}, false, ErrDowngrade},
		{"older release, forced", Manifest{Version: "v0.9.0", Arch: "amd64"}, Running{Version: "v0.18.2", Arch: "amd64"}, true, nil},
		{"older commit", Manifest{Version: "a1b2c3d", CommitTime: t0}, Running{Version: "d4e5f6a-dirty", CommitTime: t0.Add(time.Hour)}, false, ErrDowngrade},
		{"newer commit", Manifest{Version: "a1b2c3d", CommitTime: t0.Add(time.Hour)}, Running{Version: "v0.18.2-3-gd4e5f6a", CommitTime: t0}, false, nil},
		{"no commit times to order by", Manifest{Version: "a1b2c3d"}, Running{Version: "d4e5f6a"}, false, nil},
		{"another architecture", Manifest{Version: "v0.19.0", Arch: "arm64"}, Running{Version: "v0.18.2", Arch: "amd64"}, false, ErrArch},
		{"another architecture, forced", Manifest{Version: "v0.19.0", Arch: "arm64"}, Running{Version: "v0.18.2", Arch: "amd64"}, true, ErrArch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.bundle.Arch == "" {
				tc.bundle.Arch = "amd64"
			}
			if tc.running.Arch == "" {
				tc.running.Arch = "amd64"
			}
			err := tc.bundle.Check(tc.running, tc.force)
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
