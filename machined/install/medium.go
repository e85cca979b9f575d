package install

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/machined/platform"
)

// MediumLabel is the volume label of the ISO (grub-mkrescue -volid).
const MediumLabel = "BALLAST"

// MountMedium finds the ISO the machine booted from (an iso9660 volume
// labelled MediumLabel), mounts it read-only on dir and returns its boot
// files. A machine booted over PXE has none: its files were never on a
// disk.
func MountMedium(dir string) (Source, error) {
	dev, err := FindMedium()
	if err != nil {
		return Source{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Source{}, err
	}
	if err := unix.Mount(dev, dir, "iso9660", unix.MS_RDONLY, ""); err != nil {
		return Source{}, fmt.Errorf("mount the install medium %s: %w", dev, err)
	}
	s := Source{Kernel: filepath.Join(dir, "boot", "vmlinuz"), Initramfs: filepath.Join(dir, "boot", "initramfs.xz")}
	if images := filepath.Join(dir, "boot", "images.cpio"); exists(images) {
		s.Images = images
	}
	if !exists(s.Kernel) || !exists(s.Initramfs) {
		_ = unix.Unmount(dir, 0)
		return Source{}, fmt.Errorf("%w: %s (%s) lacks boot/vmlinuz or boot/initramfs.xz", ErrNoMedium, dev, MediumLabel)
	}
	return s, nil
}

// FindMedium returns the block device of the install medium.
func FindMedium() (string, error) {
	entries, err := os.ReadDir("/sys/class/block")
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		dev := "/dev/" + e.Name()
		f, err := os.Open(dev)
		if err != nil {
			continue
		}
		label, fstype, err := platform.Label(f)
		f.Close()
		if err == nil && fstype == "iso9660" && label == MediumLabel {
			return dev, nil
		}
	}
	return "", fmt.Errorf("%w: no ISO labelled %s is attached", ErrNoMedium, MediumLabel)
}
