package slots

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ballast-os/ballast/pkg/bundle"
)

// testBundle writes a bundle of a machined and two archives into a temp
// directory and returns it with the parts' contents.
func testBundle(t *testing.T) (string, *bundle.Manifest, map[string][]byte) {
	t.Helper()
	src := t.TempDir()
	files := map[string][]byte{
		"machined":  bytes.Repeat([]byte("agent"), 1000),
		"a.tar":     bytes.Repeat([]byte("layer-a"), 300),
		"b.tar":     []byte("layer-b"),
		"vmlinuz":   []byte("kernel"),
		"other.bin": nil,
	}
	var sources []bundle.Source
	for _, part := range []struct{ name, kind string }{
		{"machined", bundle.KindMachined}, {"a.tar", bundle.KindArchive}, {"b.tar", bundle.KindArchive}, {"vmlinuz", bundle.KindKernel},
	} {
		p := filepath.Join(src, part.name)
		if err := os.WriteFile(p, files[part.name], 0o644); err != nil {
			t.Fatal(err)
		}
		sources = append(sources, bundle.Source{Path: p, Kind: part.kind})
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	m, err := bundle.Write(dir, bundle.Manifest{Version: "v2", Arch: "amd64"}, sources)
	if err != nil {
		t.Fatal(err)
	}
	return dir, m, files
}

var containerKinds = []string{bundle.KindMachined, bundle.KindArchive}

func noneHeld(bundle.Part) string { return "" }

// send streams the wanted parts in chunks of 100 bytes, corrupting part
// bad (if named).
func send(t *testing.T, w *Writer, files map[string][]byte, bad string) error {
	t.Helper()
	for _, name := range w.Wanted() {
		data := append([]byte{}, files[name]...)
		if name == bad {
			data[0] ^= 1
		}
		for len(data) > 0 {
			n := min(100, len(data))
			if err := w.Write(name, data[:n]); err != nil {
				return err
			}
			data = data[n:]
		}
	}
	return w.Commit()
}

func TestWriterWritesSlot(t *testing.T) {
	_, m, files := testBundle(t)
	slot := filepath.Join(t.TempDir(), "boot", B)
	w, err := NewWriter(slot, m, containerKinds, noneHeld)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Wanted(); len(got) != 3 {
		t.Fatalf("wanted %v: want machined and the two archives, not the kernel", got)
	}
	if err := send(t, w, files, ""); err != nil {
		t.Fatal(err)
	}
	got, err := bundle.Load(slot)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(slot); err == nil {
		t.Fatal("the slot's manifest lists the kernel it does not hold")
	}
	if _, err := os.Stat(filepath.Join(slot, "vmlinuz")); err == nil {
		t.Error("the kernel was written to a container-mode slot")
	}
	if data, _ := os.ReadFile(filepath.Join(slot, "a.tar")); !bytes.Equal(data, files["a.tar"]) {
		t.Error("a.tar differs")
	}
	if _, err := os.Stat(slot + ".new"); err == nil {
		t.Error("the temporary directory is left")
	}
}

func TestWriterRefusesAndKeepsSlot(t *testing.T) {
	_, m, files := testBundle(t)
	tests := []struct {
		name string
		run  func(w *Writer) error
		want error
	}{
		{"digest mismatch", func(w *Writer) error { return send(t, w, files, "a.tar") }, bundle.ErrDigest},
		{"too long", func(w *Writer) error {
			first := w.Wanted()[0]
			return w.Write(first, append(append([]byte{}, files[first]...), 'x'))
		}, bundle.ErrDigest},
		{"out of order", func(w *Writer) error { return w.Write(w.Wanted()[1], []byte("x")) }, bundle.ErrInvalid},
		{"unknown part", func(w *Writer) error { return w.Write("vmlinuz", []byte("kernel")) }, bundle.ErrInvalid},
		{"missing parts", func(w *Writer) error {
			if err := w.Write(w.Wanted()[0], files[w.Wanted()[0]]); err != nil {
				return err
			}
			return w.Commit()
		}, bundle.ErrInvalid},
		{"short part", func(w *Writer) error {
			if err := w.Write(w.Wanted()[0], files[w.Wanted()[0]][:1]); err != nil {
				return err
			}
			return w.Commit()
		}, bundle.ErrDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slot := filepath.Join(t.TempDir(), B)
			if err := os.MkdirAll(slot, 0o755); err != nil {
				t.Fatal(err)
			}
			old := filepath.Join(slot, "machined")
			if err := os.WriteFile(old, []byte("old agent"), 0o755); err != nil {
				t.Fatal(err)
			}
			w, err := NewWriter(slot, m, containerKinds, noneHeld)
			if err != nil {
				t.Fatal(err)
			}
			err = tt.run(w)
			w.Abort()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if data, _ := os.ReadFile(old); string(data) != "old agent" {
				t.Errorf("the slot changed: %q", data)
			}
			if _, err := os.Stat(slot + ".new"); err == nil {
				t.Error("Abort left the temporary directory")
			}
		})
	}
}

func TestWriterReusesHeldParts(t *testing.T) {
	dir, m, files := testBundle(t)
	other := filepath.Join(t.TempDir(), "held.tar")
	if err := os.WriteFile(other, files["a.tar"], 0o644); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(t.TempDir(), "stale.tar")
	if err := os.WriteFile(stale, bytes.Repeat([]byte("x"), len(files["a.tar"])), 0o644); err != nil {
		t.Fatal(err)
	}
	slot := filepath.Join(t.TempDir(), A)
	w, err := NewWriter(slot, m, containerKinds, func(p bundle.Part) string {
		return Have(p, stale, other, filepath.Join(dir, "missing"))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range w.Wanted() {
		if name == "a.tar" {
			t.Fatalf("wanted %v: a.tar is held already", w.Wanted())
		}
	}
	if err := send(t, w, files, ""); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(slot, "a.tar")); !bytes.Equal(data, files["a.tar"]) {
		t.Error("the held a.tar was not placed in the slot")
	}
}
