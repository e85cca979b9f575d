// Command mkimages packs the Kubernetes components built by hack/build-k8s.sh
// into OCI image archives (_out/images/<component>-<version>.tar) that
// machined imports into containerd without a registry. An archive newer than
// its binary is kept, so a second run takes no time.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ballast-os/ballast/pkg/images"
	"github.com/ballast-os/ballast/pkg/ociimage"
)

func main() {
	binDir := flag.String("bin-dir", "", "directory of the component binaries (_out/k8s/VERSION)")
	out := flag.String("out", "_out/images", "directory of the image archives")
	version := flag.String("version", "", "Kubernetes version the binaries are")
	flag.Parse()
	if *binDir == "" || *version == "" {
		fmt.Fprintln(os.Stderr, "usage: mkimages -bin-dir _out/k8s/VERSION -version VERSION [-out _out/images] [COMPONENT…]")
		os.Exit(2)
	}
	comps := flag.Args()
	if len(comps) == 0 {
		comps = images.ControlPlaneComponents
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "mkimages:", err)
		os.Exit(1)
	}
	for _, c := range comps {
		if err := pack(*binDir, *out, c, *version); err != nil {
			fmt.Fprintln(os.Stderr, "mkimages:", err)
			os.Exit(1)
		}
	}
}

func pack(binDir, out, comp, version string) error {
	bin := filepath.Join(binDir, comp)
	bst, err := os.Stat(bin)
	if err != nil {
		return fmt.Errorf("%s: %w (run hack/build-k8s.sh)", comp, err)
	}
	dst := filepath.Join(out, images.ArchiveName(comp, version))
	if ast, err := os.Stat(dst); err == nil && ast.ModTime().After(bst.ModTime()) {
		fmt.Printf("mkimages: %s cached\n", dst)
		return nil
	}
	start := time.Now()
	ref := images.Ref(comp, version)
	digest, err := ociimage.Write(dst, ociimage.Spec{
		Name:       ref,
		Files:      []ociimage.File{{Path: "/usr/local/bin/" + comp, Source: bin, Mode: 0o755}},
		Entrypoint: []string{"/usr/local/bin/" + comp},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Labels:     map[string]string{"org.opencontainers.image.version": version, "org.opencontainers.image.title": comp},
	})
	if err != nil {
		return fmt.Errorf("%s: %w", comp, err)
	}
	st, _ := os.Stat(dst)
	fmt.Printf("mkimages: %s %s (%d MiB) %s in %.1fs\n", ref, digest, st.Size()>>20, dst, time.Since(start).Seconds())
	return nil
}
