package platform

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNoVolume means no block device carries the seed volume's label.
var ErrNoVolume = errors.New("no volume with that label")

// Label returns the volume label and filesystem (iso9660 or vfat) of the
// filesystem image r starts with, read from its superblock.
func Label(r io.ReaderAt) (label, fstype string, err error) {
	// ISO 9660: primary volume descriptor at 32 KiB: type 1, "CD001",
	// volume identifier at offset 40, 32 characters.
	pvd := make([]byte, 72)
	if _, err := r.ReadAt(pvd, 0x8000); err == nil && pvd[0] == 1 && string(pvd[1:6]) == "CD001" {
		return strings.TrimRight(string(pvd[40:72]), " \x00"), "iso9660", nil
	}
	// FAT: boot sector signature 0x55AA; the label is at 0x47 (FAT32,
	// "FAT32   " at 0x52) or 0x2B (FAT12/16, "FAT" at 0x36), 11 characters.
	bs := make([]byte, 512)
	if _, err := r.ReadAt(bs, 0); err != nil {
		return "", "", err
	}
	if bs[510] != 0x55 || bs[511] != 0xAA {
		return "", "", errors.New("neither ISO 9660 nor FAT")
	}
	switch {
	case bytes.HasPrefix(bs[0x52:], []byte("FAT32")):
		return strings.TrimRight(string(bs[0x47:0x52]), " \x00"), "vfat", nil
	case bytes.HasPrefix(bs[0x36:], []byte("FAT")):
		return strings.TrimRight(string(bs[0x2B:0x36]), " \x00"), "vfat", nil
	}
	return "", "", errors.New("neither ISO 9660 nor FAT")
}

// readNoCloudVolume finds the block device labelled label (case-insensitive,
// as cloud-init does), mounts it read-only and reads its user-data.
func readNoCloudVolume(label string) ([]byte, error) {
	entries, err := os.ReadDir("/sys/class/block")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		dev := "/dev/" + e.Name()
		f, err := os.Open(dev)
		if err != nil {
			continue
		}
		l, fstype, err := Label(f)
		f.Close()
		if err != nil || !strings.EqualFold(l, label) {
			continue
		}
		return readUserData(dev, fstype)
	}
	return nil, fmt.Errorf("%w %q", ErrNoVolume, label)
}

func readUserData(dev, fstype string) ([]byte, error) {
	dir, err := os.MkdirTemp("/run", "cidata")
	if err != nil {
		return nil, err
	}
	defer os.Remove(dir)
	if err := unix.Mount(dev, dir, fstype, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return nil, fmt.Errorf("mount %s (%s): %w", dev, fstype, err)
	}
	defer unix.Unmount(dir, 0)
	data, err := os.ReadFile(filepath.Join(dir, "user-data"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dev, err)
	}
	return data, nil
}
