package containerd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ctrversion "github.com/containerd/containerd/v2/version"
	"github.com/containerd/errdefs"

	ballastimages "github.com/ballast-os/ballast/pkg/images"
)

// Version is the containerd version of the Go client machined is built
// with; the daemon must be the same (hack/build-containerd.sh builds it from
// the same module version).
var Version = clientVersion()

// ImportDir imports the *.tar image archives in dir into the containerd
// namespace place names for each ("": skip it; nil: all into the client's
// default namespace) and unpacks them for the default snapshotter. A missing
// dir is not an error (a node may pull everything instead).
func (d *Daemon) ImportDir(ctx context.Context, dir string, out io.Writer, place func(file string) string) error {
	cl, err := d.Client()
	if err != nil {
		return err
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return fmt.Errorf("image archives: %w", err)
	}
	if len(names) == 0 {
		fmt.Fprintf(out, "no image archives in %s\n", dir)
		return nil
	}
	sort.Strings(names)
	for _, name := range names {
		ictx := ctx
		if place != nil {
			ns := place(filepath.Base(name))
			if ns == "" {
				continue
			}
			ictx = namespaces.WithNamespace(ctx, ns)
		}
		start := time.Now()
		imgs, err := importArchive(ictx, cl, name)
		if err != nil {
			return err
		}
		for _, img := range imgs {
			if err := unpack(ictx, cl, img); err != nil {
				return fmt.Errorf("unpack %s: %w", img.Name, err)
			}
			fmt.Fprintf(out, "imported %s (%s) from %s into %s in %s\n", img.Name, img.Target.Digest, filepath.Base(name), namespaceOf(ictx), time.Since(start).Round(time.Millisecond))
		}
	}
	return nil
}

func namespaceOf(ctx context.Context) string {
	if ns, ok := namespaces.Namespace(ctx); ok {
		return ns
	}
	return "the default namespace"
}

func importArchive(ctx context.Context, cl *containerd.Client, path string) ([]images.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open image archive: %w", err)
	}
	defer f.Close()
	imgs, err := cl.Import(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	return imgs, nil
}

func unpack(ctx context.Context, cl *containerd.Client, img images.Image) error {
	i := containerd.NewImage(cl, img)
	ok, err := i.IsUnpacked(ctx, defaults.DefaultSnapshotter)
	if err != nil || ok {
		return err
	}
	return i.Unpack(ctx, defaults.DefaultSnapshotter)
}

// EnsureImage makes sure ref is present and unpacked: an image Ballast
// builds must come from an archive; any other is pulled from its registry.
func (d *Daemon) EnsureImage(ctx context.Context, ref string, out io.Writer) error {
	cl, err := d.Client()
	if err != nil {
		return err
	}
	img, err := cl.GetImage(ctx, ref)
	if err == nil {
		ok, err := img.IsUnpacked(ctx, defaults.DefaultSnapshotter)
		if err != nil {
			return fmt.Errorf("image %s: %w", ref, err)
		}
		if !ok {
			return img.Unpack(ctx, defaults.DefaultSnapshotter)
		}
		return nil
	}
	if !errdefs.IsNotFound(err) {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	if ballastimages.IsLocal(ref) {
		return fmt.Errorf("image %s is not present: it is built by Ballast ('make images') and imported from %s archives", ref, ballastimages.Repository)
	}
	start := time.Now()
	if _, err := cl.Pull(ctx, ref, containerd.WithPullUnpack); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	fmt.Fprintf(out, "pulled %s in %s\n", ref, time.Since(start).Round(time.Millisecond))
	return nil
}

func clientVersion() string {
	return strings.TrimPrefix(strings.SplitN(ctrversion.Version, "+", 2)[0], "v")
}
