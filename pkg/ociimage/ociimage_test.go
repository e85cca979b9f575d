package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// entries reads a tar archive into name -> content.
func entries(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		out[h.Name] = data
	}
}

func TestWriteIsReproducibleAndNamed(t *testing.T) {
	dir := t.TempDir()
	bin := writeFile(t, dir, "tool", "#!/bin/true\n")
	spec := Spec{
		Name:       "ballast.local/tool:v1",
		Files:      []File{{Path: "/usr/local/bin/tool", Source: bin, Mode: 0o755}},
		Entrypoint: []string{"/usr/local/bin/tool"},
	}
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	da, err := Write(a, spec)
	if err != nil {
		t.Fatal(err)
	}
	// A later write of the same inputs (new mtimes) gives the same bytes.
	if err := os.Chtimes(bin, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	db, err := Write(b, spec)
	if err != nil {
		t.Fatal(err)
	}
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if da != db || !bytes.Equal(ba, bb) {
		t.Fatalf("two writes differ: %s vs %s", da, db)
	}
	files := entries(t, bytes.NewReader(ba))
	if _, ok := files["oci-layout"]; !ok {
		t.Fatalf("no oci-layout in %v", keys(files))
	}
	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations[NameAnnotation] != spec.Name || index.Manifests[0].Digest != da.String() {
		t.Fatalf("index.json = %s", files["index.json"])
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestWriteRejects(t *testing.T) {
	dir := t.TempDir()
	bin := writeFile(t, dir, "tool", "x")
	for _, tc := range []struct {
		name string
		spec Spec
	}{
		{"no tag", Spec{Name: "ballast.local/tool", Files: []File{{Path: "/tool", Source: bin}}}},
		{"no files", Spec{Name: "ballast.local/tool:v1"}},
		{"relative path", Spec{Name: "ballast.local/tool:v1", Files: []File{{Path: "tool", Source: bin}}}},
		{"unclean path", Spec{Name: "ballast.local/tool:v1", Files: []File{{Path: "/a/../tool", Source: bin}}}},
		{"directory source", Spec{Name: "ballast.local/tool:v1", Files: []File{{Path: "/tool", Source: dir}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(dir, "out.tar")
			_, err := Write(dst, tc.spec)
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("err = %v, want ErrInvalidSpec", err)
			}
			if _, err := os.Stat(dst); err == nil {
				t.Fatal("an archive was written for an invalid spec")
			}
		})
	}
}

func TestWriteSymlinks(t *testing.T) {
	dir := t.TempDir()
	bin := writeFile(t, dir, "busybox", "#!/bin/true\n")
	dst := filepath.Join(dir, "img.tar")
	if _, err := Write(dst, Spec{Name: "ballast.local/bb:1", Files: []File{
		{Path: "/bin/busybox", Source: bin, Mode: 0o755},
		{Path: "/bin/sh", Link: "busybox"},
	}}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(dst)
	for name, blob := range entries(t, bytes.NewReader(data)) {
		if !strings.HasPrefix(name, "blobs/") {
			continue
		}
		tr := tar.NewReader(bytes.NewReader(blob))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if h.Name == "bin/sh" {
				if h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
					t.Fatalf("bin/sh = type %c link %q, want a symlink to busybox", h.Typeflag, h.Linkname)
				}
				return
			}
		}
	}
	t.Fatal("no layer holds bin/sh")
}
