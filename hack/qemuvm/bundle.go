package qemuvm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/ballast-os/ballast/pkg/bundle"
)

// MachineBundle writes a machine bundle of the build in out (_out) whose
// /init is init: the build's kernel, its initramfs followed by a gzip'd
// cpio holding init (the kernel unpacks the archives in turn; the later
// file wins) and, with images, its images.cpio.
func MachineBundle(dir, out, init string, m bundle.Manifest, images bool) error {
	out, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "machine-bundle-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	tree := filepath.Join(work, "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return err
	}
	if b, err := exec.Command("cp", init, filepath.Join(tree, "init")).CombinedOutput(); err != nil {
		return fmt.Errorf("cp %s: %w: %s", init, err, b)
	}
	initramfs := filepath.Join(work, "initramfs.xz")
	sh := `cd "$1" && echo init | cpio --quiet -o -H newc -R 0:0 | gzip -1 >"$2.cpio.gz" && cat "$3" "$2.cpio.gz" >"$2"`
	if b, err := exec.Command("bash", "-c", sh, "-", tree, initramfs, filepath.Join(out, "initramfs.xz")).CombinedOutput(); err != nil {
		return fmt.Errorf("initramfs: %w: %s", err, b)
	}
	if m.Arch == "" {
		m.Arch = runtime.GOARCH
	}
	src := []bundle.Source{
		{Path: filepath.Join(out, "vmlinuz"), Name: "vmlinuz", Kind: bundle.KindKernel},
		{Path: initramfs, Name: "initramfs.xz", Kind: bundle.KindInitramfs},
	}
	if images {
		src = append(src, bundle.Source{Path: filepath.Join(out, "images.cpio"), Name: "images.cpio", Kind: bundle.KindImages})
	}
	_, err = bundle.Write(dir, m, src)
	return err
}
