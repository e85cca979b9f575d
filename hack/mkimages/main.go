// Command mkimages packs the binaries Ballast builds into OCI image archives
// (_out/images/<name>-<version>.tar) that machined imports into containerd
// without a registry: the control-plane components and kube-proxy (built by
// hack/build-k8s.sh), CoreDNS (hack/build-coredns.sh), pause (images/pause)
// and Debian's busybox-static for test pods. An archive newer than its
// inputs is kept, so a second run takes no time.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ballast-os/ballast/pkg/images"
	"github.com/ballast-os/ballast/pkg/ociimage"
)

// nft is the nftables CLI kube-proxy's nftables mode runs; it is packed
// with the shared libraries it links, as Debian installs them.
const nft = "/usr/sbin/nft"

// busybox is Debian's busybox-static.
const busybox = "/bin/busybox"

func main() {
	binDir := flag.String("bin-dir", "", "directory of the Kubernetes binaries (_out/k8s/VERSION)")
	out := flag.String("out", "_out/images", "directory of the image archives")
	version := flag.String("version", "", "Kubernetes version the binaries are")
	coredns := flag.String("coredns", "", "CoreDNS binary (hack/build-coredns.sh); empty: no CoreDNS image")
	pause := flag.String("pause", "", "pause binary (images/pause); empty: no pause image")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: mkimages -bin-dir _out/k8s/VERSION -version VERSION [-coredns BIN] [-pause BIN] [-out _out/images] [IMAGE…]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *binDir == "" || *version == "" {
		flag.Usage()
		os.Exit(2)
	}
	all := map[string]func() (ociimage.Spec, error){}
	for _, c := range images.ControlPlaneComponents {
		all[c] = func() (ociimage.Spec, error) { return component(*binDir, c, *version), nil }
	}
	all[images.KubeProxy] = func() (ociimage.Spec, error) { return kubeProxy(*binDir, *version) }
	if *coredns != "" {
		all[images.CoreDNS] = func() (ociimage.Spec, error) {
			return single(images.CoreDNS, images.CoreDNSVersion, *coredns, "/coredns"), nil
		}
	}
	if *pause != "" {
		all[images.Pause] = func() (ociimage.Spec, error) { return single(images.Pause, images.PauseVersion, *pause, "/pause"), nil }
	}
	all[images.Busybox] = busyboxImage
	names := flag.Args()
	if len(names) == 0 {
		names = append(append([]string(nil), images.ControlPlaneComponents...), images.PodImages...)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fatal(err)
	}
	for _, name := range names {
		mk, ok := all[name]
		if !ok {
			if name == images.CoreDNS || name == images.Pause {
				fmt.Printf("mkimages: %s skipped (no -%s binary)\n", name, name)
				continue
			}
			fatal(fmt.Errorf("unknown image %q", name))
		}
		spec, err := mk()
		if err != nil {
			fatal(fmt.Errorf("%s: %w", name, err))
		}
		if err := pack(*out, name, spec); err != nil {
			fatal(fmt.Errorf("%s: %w", name, err))
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "mkimages:", err)
	os.Exit(1)
}

func component(binDir, comp, version string) ociimage.Spec {
	s := single(comp, version, filepath.Join(binDir, comp), "/usr/local/bin/"+comp)
	s.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	return s
}

func single(name, version, src, dst string) ociimage.Spec {
	return ociimage.Spec{
		Name:       images.Ref(name, version),
		Files:      []ociimage.File{{Path: dst, Source: src, Mode: 0o755}},
		Entrypoint: []string{dst},
		Labels:     map[string]string{"org.opencontainers.image.version": version, "org.opencontainers.image.title": name},
	}
}

// kubeProxy is kube-proxy with nft and its libraries (nftables mode).
func kubeProxy(binDir, version string) (ociimage.Spec, error) {
	s := component(binDir, images.KubeProxy, version)
	libs, err := sharedLibs(nft)
	if err != nil {
		return s, fmt.Errorf("%w (install Debian's nftables: hack/install-deps.sh build)", err)
	}
	s.Files = append(s.Files, ociimage.File{Path: nft, Source: nft, Mode: 0o755})
	for _, l := range libs {
		s.Files = append(s.Files, ociimage.File{Path: l, Source: l, Mode: 0o755})
	}
	s.Env = []string{"PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return s, nil
}

// sharedLibs lists the libraries (and the loader) bin links, by ldd.
func sharedLibs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "libx.so.1 => /lib/x86_64-linux-gnu/libx.so.1 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
		for _, f := range strings.Fields(sc.Text()) {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
				break
			}
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s listed no libraries", bin)
	}
	return libs, nil
}

// busyboxImage is Debian's busybox-static with a link per applet.
func busyboxImage() (ociimage.Spec, error) {
	banner, err := exec.Command(busybox).CombinedOutput()
	if !bytes.Contains(banner, []byte("BusyBox v"+images.BusyboxVersion)) {
		return ociimage.Spec{}, fmt.Errorf("%s is not BusyBox v%s (%v; install Debian's busybox-static or update BUSYBOX_VERSION in hack/tools.env and pkg/images)", busybox, images.BusyboxVersion, err)
	}
	list, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return ociimage.Spec{}, fmt.Errorf("busybox --list-full: %w", err)
	}
	s := single(images.Busybox, images.BusyboxVersion, busybox, "/bin/busybox")
	s.Entrypoint = nil
	s.Labels["org.opencontainers.image.title"] = images.Busybox
	for _, applet := range strings.Fields(string(list)) {
		p := "/" + applet
		if p == "/bin/busybox" {
			continue
		}
		s.Files = append(s.Files, ociimage.File{Path: p, Link: "/bin/busybox"})
	}
	s.Env = []string{"PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return s, nil
}

// pack writes spec's archive unless one newer than every input exists.
func pack(out, name string, spec ociimage.Spec) error {
	version := spec.Name[strings.LastIndex(spec.Name, ":")+1:]
	dst := filepath.Join(out, images.ArchiveName(name, version))
	if ast, err := os.Stat(dst); err == nil && newerThanInputs(ast.ModTime(), spec) {
		fmt.Printf("mkimages: %s cached\n", dst)
		return nil
	}
	for _, f := range spec.Files {
		if f.Link != "" {
			continue
		}
		if _, err := os.Stat(f.Source); err != nil {
			return fmt.Errorf("%w (build it first: make images)", err)
		}
	}
	start := time.Now()
	digest, err := ociimage.Write(dst, spec)
	if err != nil {
		return err
	}
	st, _ := os.Stat(dst)
	fmt.Printf("mkimages: %s %s (%d MiB) %s in %.1fs\n", spec.Name, digest, st.Size()>>20, dst, time.Since(start).Seconds())
	return nil
}

func newerThanInputs(t time.Time, spec ociimage.Spec) bool {
	for _, f := range spec.Files {
		if f.Link != "" {
			continue
		}
		st, err := os.Stat(f.Source)
		if err != nil || !t.After(st.ModTime()) {
			return false
		}
	}
	return true
}
