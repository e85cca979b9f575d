// Command mkbundle writes Ballast's upgrade bundle (package bundle) from
// the artifacts `make images` built: the kernel, the initramfs, the
// component images as a second initrd, and for container-mode nodes the
// machined binary and the OCI image archives. Parts are hard-linked, the
// manifest (versions, architecture, each part's size and SHA-256) is
// written last.
//
// With -kubelet it writes a Kubernetes bundle instead (`make kubernetes`):
// that kubelet and the archives of the Kubernetes components and kube-proxy
// of -kubernetes found in -artifacts/images, for `nodectl upgrade-k8s`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"time"

	"github.com/ballast-os/ballast/pkg/bundle"
	"github.com/ballast-os/ballast/pkg/images"
)

func main() {
	out := flag.String("out", "_out/bundle", "bundle directory to write")
	artifacts := flag.String("artifacts", "_out", "directory of the built artifacts (vmlinuz, initramfs.xz, images.cpio, bin/machined, images/*.tar)")
	version := flag.String("version", "", "Ballast version of the build (git describe)")
	commitTime := flag.String("commit-time", "", "the build's commit time (RFC 3339)")
	kubernetes := flag.String("kubernetes", "", "Kubernetes version of the component images")
	arch := flag.String("arch", runtime.GOARCH, "architecture of the build (GOARCH)")
	kubelet := flag.String("kubelet", "", "write a Kubernetes bundle: this kubelet binary and the Kubernetes archives of -artifacts/images")
	flag.Parse()
	if err := run(*out, *artifacts, *version, *commitTime, *kubernetes, *arch, *kubelet); err != nil {
		fmt.Fprintln(os.Stderr, "mkbundle:", err)
		os.Exit(1)
	}
}

func run(out, artifacts, version, commitTime, kubernetes, arch, kubelet string) error {
	if version == "" {
		return fmt.Errorf("-version is required")
	}
	var at time.Time
	if commitTime != "" {
		t, err := time.Parse(time.RFC3339, commitTime)
		if err != nil {
			return fmt.Errorf("-commit-time: %w", err)
		}
		at = t.UTC()
	}
	var sources []bundle.Source
	var err error
	if kubelet != "" {
		sources, err = kubernetesSources(artifacts, kubernetes, kubelet)
	} else {
		sources, err = osSources(artifacts)
	}
	if err != nil {
		return err
	}
	for _, s := range sources {
		if _, err := os.Stat(s.Path); err != nil {
			return fmt.Errorf("%s part: %w (run make images)", s.Kind, err)
		}
	}
	m, err := bundle.Write(out, bundle.Manifest{Version: version, CommitTime: at, KubernetesVersion: kubernetes, Arch: arch}, sources)
	if err != nil {
		return err
	}
	var size int64
	for _, p := range m.Parts {
		size += p.Size
	}
	fmt.Printf("bundle %s (%s, Kubernetes %s, %s): %d parts, %.1f MB in %s\n", m.Version, m.CommitTime.Format(time.RFC3339), m.KubernetesVersion, m.Arch, len(m.Parts), float64(size)/1e6, out)
	return nil
}

// kubernetesSources are a Kubernetes bundle's parts: the kubelet and the
// archives of the components and kube-proxy of that release.
func kubernetesSources(artifacts, kubernetes, kubelet string) ([]bundle.Source, error) {
	if kubernetes == "" {
		return nil, fmt.Errorf("-kubernetes is required with -kubelet")
	}
	sources := []bundle.Source{{Path: kubelet, Name: "kubelet", Kind: bundle.KindKubelet}}
	for _, c := range append(slices.Clone(images.ControlPlaneComponents), images.KubeProxy) {
		sources = append(sources, bundle.Source{Path: filepath.Join(artifacts, "images", images.ArchiveName(c, kubernetes)), Kind: bundle.KindArchive})
	}
	return sources, nil
}

// osSources are an OS bundle's parts.
func osSources(artifacts string) ([]bundle.Source, error) {
	sources := []bundle.Source{
		{Path: filepath.Join(artifacts, "vmlinuz"), Kind: bundle.KindKernel},
		{Path: filepath.Join(artifacts, "initramfs.xz"), Kind: bundle.KindInitramfs},
		{Path: filepath.Join(artifacts, "bin", "machined"), Kind: bundle.KindMachined},
	}
	if _, err := os.Stat(filepath.Join(artifacts, "images.cpio")); err == nil {
		sources = append(sources, bundle.Source{Path: filepath.Join(artifacts, "images.cpio"), Kind: bundle.KindImages})
	}
	archives, err := filepath.Glob(filepath.Join(artifacts, "images", "*.tar"))
	if err != nil {
		return nil, err
	}
	sort.Strings(archives)
	for _, a := range archives {
		sources = append(sources, bundle.Source{Path: a, Kind: bundle.KindArchive})
	}
	return sources, nil
}
