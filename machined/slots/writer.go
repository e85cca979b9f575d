package slots

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/bundle"
)

// Writer writes an upgrade bundle into a slot directory. Parts are written
// into a directory beside the slot (dir + ".new") while they are hashed;
// the slot is replaced only by Commit, after every part's size and SHA-256
// matched the manifest. A failure or a power cut before that leaves the
// slot as it was (the half-written directory is removed by the next
// writer).
type Writer struct {
	dir, tmp string
	m        *bundle.Manifest
	// recv are the parts the client sends, in order; reuse maps the other
	// parts to a file the node already holds with the same content.
	recv  []bundle.Part
	reuse map[string]string
	i     int // index in recv of the part being received
	f     *os.File
	h     hash.Hash
	n     int64
}

// NewWriter prepares to write the parts of m whose kind is in kinds into
// dir. have returns a file the node already holds with a part's content
// ("" when none): such parts are copied locally instead of sent.
func NewWriter(dir string, m *bundle.Manifest, kinds []string, have func(bundle.Part) string) (*Writer, error) {
	w, err := NewPartsWriter(dir, m, func(p bundle.Part) bool { return slices.Contains(kinds, p.Kind) }, have)
	if errors.Is(err, errNoParts) {
		return nil, fmt.Errorf("%w: no part of kind %s", bundle.ErrInvalid, strings.Join(kinds, ", "))
	}
	return w, err
}

// errNoParts is NewPartsWriter's refusal of a bundle with no part wanted.
var errNoParts = fmt.Errorf("%w: no part this node needs", bundle.ErrInvalid)

// NewPartsWriter is NewWriter for the parts of m that want accepts.
func NewPartsWriter(dir string, m *bundle.Manifest, want func(bundle.Part) bool, have func(bundle.Part) string) (*Writer, error) {
	w := &Writer{dir: dir, tmp: dir + ".new", m: m, reuse: map[string]string{}}
	for _, p := range m.Parts {
		if !want(p) {
			continue
		}
		if path := have(p); path != "" {
			w.reuse[p.Name] = path
			continue
		}
		w.recv = append(w.recv, p)
	}
	if len(w.recv)+len(w.reuse) == 0 {
		return nil, errNoParts
	}
	if err := os.RemoveAll(w.tmp); err != nil {
		return nil, fmt.Errorf("remove a half-written slot: %w", err)
	}
	if err := os.MkdirAll(w.tmp, 0o755); err != nil {
		return nil, err
	}
	return w, nil
}

// Wanted returns the names of the parts to send, in order.
func (w *Writer) Wanted() []string {
	names := make([]string, len(w.recv))
	for i, p := range w.recv {
		names[i] = p.Name
	}
	return names
}

// Write appends data to part. Parts come whole, in Wanted's order.
func (w *Writer) Write(part string, data []byte) error {
	if w.f == nil || w.recv[w.i].Name != part {
		if err := w.finishPart(); err != nil {
			return err
		}
		if w.i >= len(w.recv) || w.recv[w.i].Name != part {
			return fmt.Errorf("%w: part %q sent out of order (expected %s)", bundle.ErrInvalid, part, w.expected())
		}
		f, err := os.OpenFile(filepath.Join(w.tmp, part), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
		if err != nil {
			return err
		}
		w.f, w.h, w.n = f, sha256.New(), 0
	}
	p := w.recv[w.i]
	if w.n+int64(len(data)) > p.Size {
		return fmt.Errorf("%w: %s is longer than the manifest's %d bytes", bundle.ErrDigest, p.Name, p.Size)
	}
	if _, err := w.f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", p.Name, err)
	}
	w.h.Write(data)
	w.n += int64(len(data))
	return nil
}

func (w *Writer) expected() string {
	if w.i < len(w.recv) {
		return fmt.Sprintf("%q", w.recv[w.i].Name)
	}
	return "no more parts"
}

// finishPart closes the part being received and checks it.
func (w *Writer) finishPart() error {
	if w.f == nil {
		return nil
	}
	p := w.recv[w.i]
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err != nil {
		return fmt.Errorf("write %s: %w", p.Name, err)
	}
	if got := hex.EncodeToString(w.h.Sum(nil)); w.n != p.Size || got != p.SHA256 {
		return fmt.Errorf("%w: %s arrived as %d bytes with SHA-256 %s, the manifest says %d bytes, %s", bundle.ErrDigest, p.Name, w.n, got, p.Size, p.SHA256)
	}
	w.i++
	return nil
}

// Commit checks that every part arrived whole, adds the parts the node
// already held, and replaces the slot with the new one. Every byte was
// hashed once already — a received part as it was written, a held one by
// Have — so nothing is read again here.
func (w *Writer) Commit() error {
	if err := w.finishPart(); err != nil {
		return err
	}
	if w.i < len(w.recv) {
		var missing []string
		for _, p := range w.recv[w.i:] {
			missing = append(missing, p.Name)
		}
		return fmt.Errorf("%w: parts not sent: %s", bundle.ErrInvalid, strings.Join(missing, ", "))
	}
	for name, src := range w.reuse {
		if err := copyFile(src, filepath.Join(w.tmp, name), w.linkable(src)); err != nil {
			return fmt.Errorf("%s from %s: %w", name, src, err)
		}
	}
	if err := writeManifest(filepath.Join(w.tmp, bundle.ManifestName), w.m); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(w.tmp); err != nil {
		return err
	}
	if err := os.RemoveAll(w.dir); err != nil {
		return fmt.Errorf("clear slot: %w", err)
	}
	if err := os.Rename(w.tmp, w.dir); err != nil {
		return fmt.Errorf("switch slot: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(w.dir))
}

// Abort removes what was written; the slot stays as it was.
func (w *Writer) Abort() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	_ = os.RemoveAll(w.tmp)
}

// Have returns the first of candidates whose content is p's (same size,
// then same SHA-256), or "".
func Have(p bundle.Part, candidates ...string) string {
	for _, c := range candidates {
		st, err := os.Stat(c)
		if err != nil || !st.Mode().IsRegular() || st.Size() != p.Size {
			continue
		}
		f, err := os.Open(c)
		if err != nil {
			continue
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err == nil && hex.EncodeToString(h.Sum(nil)) == p.SHA256 {
			return c
		}
	}
	return ""
}

// linkable reports whether src may be hard-linked into the new slot: only
// a file of the other slot, which nothing modifies in place. A file of the
// boot medium (a build's output) is copied, so a later build that rewrites
// it cannot change a slot.
func (w *Writer) linkable(src string) bool {
	rel, err := filepath.Rel(filepath.Dir(w.dir), src)
	return err == nil && !strings.HasPrefix(rel, "..")
}

// copyFile hard-links src to dst when link, else copies it (fsynced).
func copyFile(src, dst string, link bool) error {
	if link {
		if err := os.Link(src, dst); err == nil {
			return nil
		}
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func writeManifest(path string, m *bundle.Manifest) error {
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o644)
}
