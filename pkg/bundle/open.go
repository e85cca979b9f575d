package bundle

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Opened is a bundle being read: its manifest (as sent and as parsed) and
// a way to read each part.
type Opened struct {
	Data     []byte
	Manifest *Manifest
	open     func(ctx context.Context, name string) (io.ReadCloser, error)
}

// OpenPart reads part name of the bundle.
func (o *Opened) OpenPart(ctx context.Context, name string) (io.ReadCloser, error) {
	return o.open(ctx, name)
}

// IsURL reports whether src names a bundle over http(s).
func IsURL(src string) bool {
	return strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
}

// Open reads the manifest of the bundle in directory src or at the http(s)
// URL src (GET src/manifest.json, then src/PART for each part).
func Open(ctx context.Context, src string) (*Opened, error) {
	if IsURL(src) {
		base := strings.TrimSuffix(src, "/")
		get := func(ctx context.Context, name string) (io.ReadCloser, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/"+name, nil)
			if err != nil {
				return nil, err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return nil, err
			}
			if resp.StatusCode != http.StatusOK {
				resp.Body.Close()
				return nil, fmt.Errorf("GET %s/%s: %s", base, name, resp.Status)
			}
			return resp.Body, nil
		}
		body, err := get(ctx, ManifestName)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", src, err)
		}
		data, err := io.ReadAll(io.LimitReader(body, 1<<20))
		body.Close()
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", src, err)
		}
		return opened(src, data, get)
	}
	data, err := os.ReadFile(filepath.Join(src, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w (make images writes _out/bundle)", src, err)
	}
	return opened(src, data, func(_ context.Context, name string) (io.ReadCloser, error) {
		return os.Open(filepath.Join(src, name))
	})
}

func opened(src string, data []byte, open func(context.Context, string) (io.ReadCloser, error)) (*Opened, error) {
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", src, err)
	}
	return &Opened{Data: data, Manifest: m, open: open}, nil
}

// Fetch copies the parts of the kinds given into dir, checking each
// part's size and SHA-256 as it arrives; a mismatch is ErrDigest and the
// part is removed.
func (o *Opened) Fetch(ctx context.Context, dir string, kinds ...string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, p := range o.Manifest.Parts {
		if !slices.Contains(kinds, p.Kind) {
			continue
		}
		if err := o.fetchPart(ctx, p, filepath.Join(dir, p.Name)); err != nil {
			return err
		}
	}
	return nil
}

func (o *Opened) fetchPart(ctx context.Context, p Part, dst string) error {
	r, err := o.open(ctx, p.Name)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	got, n, err := digest(io.TeeReader(io.LimitReader(r, p.Size+1), f))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && (n != p.Size || got != p.SHA256) {
		err = fmt.Errorf("%w: %s arrived as %d bytes with SHA-256 %s, the manifest says %d bytes, %s", ErrDigest, p.Name, n, got, p.Size, p.SHA256)
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("part %s: %w", p.Name, err)
	}
	return nil
}
