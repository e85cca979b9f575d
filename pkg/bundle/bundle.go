// Package bundle is Ballast's upgrade bundle: a directory with the parts of
// one build of the OS (kernel, initramfs, the component images, and for
// container-mode nodes the machined binary and the image archives) and a
// manifest.json naming each part with its size and SHA-256, the Ballast and
// Kubernetes versions and the architecture. There is no registry: `make
// images` writes _out/bundle/, and a node is upgraded from it.
//
// A Kubernetes bundle (`make kubernetes`, _out/k8s/<version>/bundle) has the
// same manifest with only a kubelet and the image archives of one
// Kubernetes release: `nodectl upgrade-k8s` stages it on every node.
//
// Check decides whether a bundle may replace the running build; Verify reads
// every part and compares it with the manifest. Both run before anything is
// written, so a refused bundle leaves both slots as they were.
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/semver"

	"github.com/ballast-os/ballast/pkg/atomicfile"
)

// ManifestName is the manifest's file name in a bundle directory.
const ManifestName = "manifest.json"

// Format is the manifest format this package writes and reads.
const Format = 1

// Kinds of parts.
const (
	KindKernel    = "kernel"    // vmlinuz
	KindInitramfs = "initramfs" // initramfs.xz: machined as /init and the node's binaries
	KindImages    = "images"    // images.cpio: the component images as a second initrd
	KindMachined  = "machined"  // the agent binary (container-mode nodes)
	KindArchive   = "archive"   // an OCI image archive (container-mode nodes)
	// KindKubelet is a kubelet binary: only Kubernetes bundles (`make
	// kubernetes`, staged by `nodectl upgrade-k8s`) have one, so a node
	// of an older build still reads every OS bundle.
	KindKubelet = "kubelet"
)

// Manifest describes a bundle.
type Manifest struct {
	Format int `json:"format"`
	// Version is the Ballast version (git describe), CommitTime the time
	// of its commit, which orders builds whose versions are not releases.
	Version           string    `json:"version"`
	CommitTime        time.Time `json:"commitTime"`
	KubernetesVersion string    `json:"kubernetesVersion"`
	// Arch is a Go GOARCH (amd64, arm64).
	Arch  string `json:"arch"`
	Parts []Part `json:"parts"`
}

// Part is one file of a bundle.
type Part struct {
	// Name is the file's name in the bundle directory.
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Typed refusals; each error wraps one.
var (
	ErrInvalid   = errors.New("invalid bundle")
	ErrDigest    = errors.New("bundle part does not match its manifest")
	ErrArch      = errors.New("bundle is for another architecture")
	ErrDowngrade = errors.New("bundle is older than the running build")
)

// partName is what a part's name may be: a plain file name.
var partName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// Load reads and validates dir's manifest (not the parts: Verify does).
func Load(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return Parse(data)
}

// Parse decodes and validates a manifest.
func Parse(data []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrInvalid, err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Manifest) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: manifest: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	switch {
	case m.Format != Format:
		return bad("format %d, this build reads %d", m.Format, Format)
	case m.Version == "":
		return bad("no version")
	case m.Arch == "":
		return bad("no arch")
	case len(m.Parts) == 0:
		return bad("no parts")
	}
	seen := map[string]bool{}
	for i, p := range m.Parts {
		switch {
		case !partName.MatchString(p.Name) || p.Name == ManifestName:
			return bad("parts[%d].name %q is not a plain file name", i, p.Name)
		case seen[p.Name]:
			return bad("parts[%d].name %q appears twice", i, p.Name)
		case !slices.Contains([]string{KindKernel, KindInitramfs, KindImages, KindMachined, KindArchive, KindKubelet}, p.Kind):
			return bad("parts[%d].kind %q is unknown", i, p.Kind)
		case p.Size < 0:
			return bad("parts[%d].size %d", i, p.Size)
		}
		if d, err := hex.DecodeString(p.SHA256); err != nil || len(d) != sha256.Size {
			return bad("parts[%d].sha256 %q is not a SHA-256", i, p.SHA256)
		}
		seen[p.Name] = true
	}
	return nil
}

// IsKubernetes reports whether m is a Kubernetes bundle (a kubelet and
// image archives, no system).
func (m *Manifest) IsKubernetes() bool {
	_, kubelet := m.Part(KindKubelet)
	return kubelet && !slices.ContainsFunc(m.Parts, func(p Part) bool { return p.Kind != KindKubelet && p.Kind != KindArchive })
}

// Part returns the first part of kind (false: none).
func (m *Manifest) Part(kind string) (Part, bool) {
	i := slices.IndexFunc(m.Parts, func(p Part) bool { return p.Kind == kind })
	if i < 0 {
		return Part{}, false
	}
	return m.Parts[i], true
}

// Running is the build a node runs now.
type Running struct {
	Version    string
	CommitTime time.Time
	Arch       string
}

// Check decides whether m may replace the running build: the same
// architecture, and not older unless force. Releases (vX.Y.Z) compare by
// semantic version; other builds by their commit time.
func (m *Manifest) Check(r Running, force bool) error {
	if m.Arch != r.Arch {
		return fmt.Errorf("%w: the bundle is %s, this node is %s", ErrArch, m.Arch, r.Arch)
	}
	if force {
		return nil
	}
	if older(m.Version, m.CommitTime, r.Version, r.CommitTime) {
		return fmt.Errorf("%w: the bundle is %s (%s), this node runs %s (%s); --force installs it anyway",
			ErrDowngrade, m.Version, m.CommitTime.UTC().Format(time.RFC3339), r.Version, r.CommitTime.UTC().Format(time.RFC3339))
	}
	return nil
}

// older reports whether build a is older than build b.
func older(av string, at time.Time, bv string, bt time.Time) bool {
	if release(av) && release(bv) {
		return semver.Compare(av, bv) < 0
	}
	if at.IsZero() || bt.IsZero() {
		return false // nothing to order by: not refused
	}
	return at.Before(bt)
}

// release reports whether v is a release version (vX.Y.Z, no suffix from
// git describe).
func release(v string) bool {
	return semver.IsValid(v) && semver.Prerelease(v) == "" && semver.Build(v) == "" && semver.Canonical(v) == v
}

// Verify reads every part of the bundle in dir and compares its size and
// SHA-256 with m.
func (m *Manifest) Verify(dir string) error {
	for _, p := range m.Parts {
		f, err := os.Open(filepath.Join(dir, p.Name))
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrDigest, p.Name, err)
		}
		got, n, err := digest(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", p.Name, err)
		}
		if n != p.Size || got != p.SHA256 {
			return fmt.Errorf("%w: %s is %d bytes with SHA-256 %s, the manifest says %d bytes, %s", ErrDigest, p.Name, n, got, p.Size, p.SHA256)
		}
	}
	return nil
}

func digest(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// Source is a file to put in a bundle.
type Source struct {
	Path string // where it is now
	Name string // its name in the bundle (default: the path's base name)
	Kind string
}

// Write makes dir a bundle of sources with m's versions and arch (m.Parts
// is filled in): each source is hard-linked into dir (copied across file
// systems), then the manifest is written last, atomically, so a half-made
// bundle has none. Files in dir that are no part of the bundle are removed.
func Write(dir string, m Manifest, sources []Source) (*Manifest, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	_ = os.Remove(filepath.Join(dir, ManifestName))
	m.Format, m.Parts = Format, nil
	keep := map[string]bool{ManifestName: true}
	for _, s := range sources {
		name := s.Name
		if name == "" {
			name = filepath.Base(s.Path)
		}
		dst := filepath.Join(dir, name)
		if err := place(s.Path, dst); err != nil {
			return nil, fmt.Errorf("bundle part %s: %w", name, err)
		}
		f, err := os.Open(dst)
		if err != nil {
			return nil, err
		}
		sum, n, err := digest(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("bundle part %s: %w", name, err)
		}
		m.Parts = append(m.Parts, Part{Name: name, Kind: s.Kind, Size: n, SHA256: sum})
		keep[name] = true
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	data, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, ManifestName), data, 0o644); err != nil {
		return nil, err
	}
	return &m, nil
}

// Marshal encodes the manifest as manifest.json holds it.
func (m *Manifest) Marshal() ([]byte, error) {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// place hard-links src to dst (replacing dst), or copies it when a link
// cannot be made.
func place(src, dst string) error {
	tmp := dst + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
	}
	return os.Rename(tmp, dst)
}
