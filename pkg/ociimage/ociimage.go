// Package ociimage packs files into single-layer OCI image archives that
// containerd imports with no registry (an oci-layout tarball whose index
// names the image with the io.containerd.image.name annotation).
//
// The archives are reproducible: the same files and spec give the same bytes
// (fixed timestamps, owners and order; gzip without a name or time).
package ociimage

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NameAnnotation is the index annotation containerd reads an imported
// image's name from.
const NameAnnotation = "io.containerd.image.name"

// File is one file of the image.
type File struct {
	// Path is the absolute path inside the image.
	Path string
	// Source is the file on this machine to copy.
	Source string
	// Mode is the file mode (0755 for programs).
	Mode int64
	// Link, when set, makes the entry a symbolic link to Link (Source is
	// then unused), e.g. busybox's applets.
	Link string
}

// Spec describes an image.
type Spec struct {
	// Name is the full reference, e.g. ballast.local/kube-apiserver:v1.36.3.
	Name       string
	Files      []File
	Entrypoint []string
	Env        []string
	Labels     map[string]string
}

// ErrInvalidSpec is returned for a spec that cannot make an image.
var ErrInvalidSpec = errors.New("invalid image spec")

// Write packs spec into an OCI archive at dst (written to a temporary file
// and renamed into place) and returns the image's manifest digest.
func Write(dst string, spec Spec) (v1.Hash, error) {
	if spec.Name == "" || !strings.Contains(spec.Name, ":") {
		return v1.Hash{}, fmt.Errorf("%w: name %q needs a tag (repo:tag)", ErrInvalidSpec, spec.Name)
	}
	work, err := os.MkdirTemp(filepath.Dir(dst), ".ociimage-*")
	if err != nil {
		return v1.Hash{}, fmt.Errorf("temporary dir: %w", err)
	}
	defer os.RemoveAll(work)

	layerTar := filepath.Join(work, "layer.tar")
	if err := writeLayerTar(layerTar, spec.Files); err != nil {
		return v1.Hash{}, err
	}
	// The layer stays uncompressed: archives travel on local disks and in
	// compressed boot images, and a node then imports and unpacks it without
	// spending a core on gunzip (three images took ~1.5 s each, compressed).
	layer, err := newFileLayer(layerTar)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("layer: %w", err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, MediaType: types.OCIUncompressedLayer})
	if err != nil {
		return v1.Hash{}, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.Env = spec.Env
	cf.Config.Labels = spec.Labels
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return v1.Hash{}, fmt.Errorf("set config: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("digest: %w", err)
	}

	dir := filepath.Join(work, "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("oci layout: %w", err)
	}
	tag := spec.Name[strings.LastIndex(spec.Name, ":")+1:]
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		NameAnnotation:                      spec.Name,
		"org.opencontainers.image.ref.name": tag,
	})); err != nil {
		return v1.Hash{}, fmt.Errorf("write image: %w", err)
	}
	tmp := filepath.Join(work, "archive.tar")
	if err := tarDir(tmp, dir); err != nil {
		return v1.Hash{}, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return v1.Hash{}, fmt.Errorf("install archive: %w", err)
	}
	return digest, nil
}

// writeLayerTar writes the files, with their parent directories, in path order.
func writeLayerTar(dst string, files []File) error {
	if len(files) == 0 {
		return fmt.Errorf("%w: no files", ErrInvalidSpec)
	}
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("layer tar: %w", err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	dirs := map[string]bool{}
	for _, file := range sorted {
		if !path.IsAbs(file.Path) || path.Clean(file.Path) != file.Path {
			return fmt.Errorf("%w: path %q must be absolute and clean", ErrInvalidSpec, file.Path)
		}
		var parents []string
		for d := path.Dir(file.Path); d != "/"; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, Format: tar.FormatPAX}); err != nil {
				return fmt.Errorf("layer tar: %w", err)
			}
		}
		name := strings.TrimPrefix(file.Path, "/")
		if file.Link != "" {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: file.Link, Mode: 0o777, Format: tar.FormatPAX}); err != nil {
				return fmt.Errorf("layer tar: %w", err)
			}
			continue
		}
		if err := addFile(tw, name, file.Source, file.Mode); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("layer tar: %w", err)
	}
	return f.Close()
}

func addFile(tw *tar.Writer, name, src string, mode int64) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("image file: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("image file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrInvalidSpec, src)
	}
	if mode == 0 {
		mode = 0o644
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: st.Size(), Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("layer tar: %w", err)
	}
	if _, err := io.Copy(tw, in); err != nil {
		return fmt.Errorf("layer tar %s: %w", name, err)
	}
	return nil
}

// tarDir archives the regular files under dir in lexical order with fixed
// metadata, so the archive depends only on their contents.
func tarDir(dst, dir string) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk layout: %w", err)
	}
	sort.Strings(names)
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	dirs := map[string]bool{}
	for _, n := range names {
		for d := path.Dir(n); d != "."; d = path.Dir(d) {
			if dirs[d] {
				break
			}
			dirs[d] = true
		}
	}
	var dirList []string
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sort.Strings(dirList)
	for _, d := range dirList {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, Format: tar.FormatPAX}); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
	}
	for _, n := range names {
		if err := addFile(tw, n, filepath.Join(dir, filepath.FromSlash(n)), 0o644); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return f.Close()
}

// fileLayer is an uncompressed layer read from a tar file: the blob is the
// tar itself, so its digest is also its diff ID.
type fileLayer struct {
	path   string
	digest v1.Hash
	size   int64
}

func newFileLayer(path string) (*fileLayer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	defer f.Close()
	h, size, err := v1.SHA256(f)
	if err != nil {
		return nil, fmt.Errorf("layer digest: %w", err)
	}
	return &fileLayer{path: path, digest: h, size: size}, nil
}

func (l *fileLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }
func (l *fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }
