package bundle

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestOpenAndFetchOverHTTP serves a bundle over HTTP: Fetch copies the
// parts of the kinds asked for; a part changed after the manifest was
// written is refused with ErrDigest and not left behind.
func TestOpenAndFetchOverHTTP(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{"vmlinuz": "kernel bytes", "initramfs.xz": "initramfs bytes", "machined": "agent"}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	_, err := Write(dir, Manifest{Version: "v1.0.0", CommitTime: time.Now(), Arch: runtime.GOARCH}, []Source{
		{Path: filepath.Join(src, "vmlinuz"), Kind: KindKernel},
		{Path: filepath.Join(src, "initramfs.xz"), Kind: KindInitramfs},
		{Path: filepath.Join(src, "machined"), Kind: KindMachined},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()

	b, err := Open(context.Background(), srv.URL+"/")
	if err != nil {
		t.Fatal(err)
	}
	got := t.TempDir()
	if err := b.Fetch(context.Background(), got, KindKernel, KindInitramfs); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"vmlinuz": "kernel bytes", "initramfs.xz": "initramfs bytes"} {
		if data, err := os.ReadFile(filepath.Join(got, name)); err != nil || string(data) != want {
			t.Errorf("%s = %q, %v", name, data, err)
		}
	}
	if _, err := os.Stat(filepath.Join(got, "machined")); err == nil {
		t.Error("a part of another kind was fetched")
	}

	if err := os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("kernel bytez"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := t.TempDir()
	if err := b.Fetch(context.Background(), bad, KindKernel); !errors.Is(err, ErrDigest) {
		t.Fatalf("Fetch of a changed part = %v, want ErrDigest", err)
	}
	if _, err := os.Stat(filepath.Join(bad, "vmlinuz")); err == nil {
		t.Error("the mismatching part was left behind")
	}
	if _, err := Open(context.Background(), srv.URL+"/missing"); err == nil {
		t.Error("Open of a URL without a manifest succeeded")
	}
}
