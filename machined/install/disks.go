package install

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ballast-os/ballast/pkg/config"
)

// Disk is a block device that could take the OS.
type Disk struct {
	Name   string // vda, sda, nvme0n1
	Path   string // /dev/vda
	Size   uint64 // bytes
	Model  string
	Serial string
	// Type is nvme, ssd or hdd (rotational).
	Type string
	// Partitions are the names of the partitions the kernel sees (vda1).
	Partitions []string
	ReadOnly   bool
}

// Errors of disk selection and checks.
var (
	ErrNoDisk        = errors.New("no disk matches")
	ErrHasPartitions = errors.New("the disk holds partitions")
	ErrTooSmall      = errors.New("the disk is too small")
)

// skipped are block devices that are never install targets: RAM disks,
// loop devices, CD-ROMs, device-mapper and software RAID, zram.
var skipped = []string{"ram", "loop", "sr", "dm-", "md", "zram", "nbd"}

// Disks lists the whole disks under sysBlock (/sys/block), sorted by name.
func Disks(sysBlock string) ([]Disk, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("list disks: %w", err)
	}
	var disks []Disk
	for _, e := range entries {
		name := e.Name()
		if hasAnyPrefix(name, skipped) {
			continue
		}
		d, err := readDisk(filepath.Join(sysBlock, name), name)
		if err != nil {
			return nil, err
		}
		disks = append(disks, d)
	}
	return disks, nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func readDisk(dir, name string) (Disk, error) {
	d := Disk{Name: name, Path: "/dev/" + name}
	sectors, err := readUint(filepath.Join(dir, "size"))
	if err != nil {
		return d, fmt.Errorf("disk %s: %w", name, err)
	}
	d.Size = sectors * 512 // the kernel counts 512-byte sectors here
	d.Model = readTrim(filepath.Join(dir, "device", "model"))
	d.Serial = readTrim(filepath.Join(dir, "device", "serial"))
	if d.Serial == "" {
		d.Serial = readTrim(filepath.Join(dir, "serial")) // virtio
	}
	switch {
	case strings.HasPrefix(name, "nvme"):
		d.Type = "nvme"
	case readTrim(filepath.Join(dir, "queue", "rotational")) == "1":
		d.Type = "hdd"
	default:
		d.Type = "ssd"
	}
	d.ReadOnly = readTrim(filepath.Join(dir, "ro")) == "1"
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "partition")); err == nil {
			d.Partitions = append(d.Partitions, e.Name())
		}
	}
	return d, nil
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

func readUint(p string) (uint64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// Select returns the disk the install section names: machine.install.disk
// by path, or the first disk (by name) diskSelector matches.
func Select(disks []Disk, in config.Install) (Disk, error) {
	if in.Disk != "" {
		for _, d := range disks {
			if d.Path == in.Disk {
				return d, nil
			}
		}
		return Disk{}, fmt.Errorf("%w: machine.install.disk %s is not a disk of this machine (disks: %s)", ErrNoDisk, in.Disk, names(disks))
	}
	if in.DiskSelector == nil {
		return Disk{}, fmt.Errorf("%w: the config names no install disk", ErrNoDisk)
	}
	for _, d := range disks {
		if ok, _ := Matches(d, *in.DiskSelector); ok {
			return d, nil
		}
	}
	var why []string
	for _, d := range disks {
		_, reason := Matches(d, *in.DiskSelector)
		why = append(why, d.Path+": "+reason)
	}
	if len(why) == 0 {
		why = append(why, "this machine has no disk")
	}
	return Disk{}, fmt.Errorf("%w machine.install.diskSelector (%s)", ErrNoDisk, strings.Join(why, "; "))
}

// Matches reports whether d matches sel, and if not, why.
func Matches(d Disk, sel config.DiskSelector) (bool, string) {
	if sel.MinSize != "" {
		if n, err := config.ParseSize(sel.MinSize); err != nil || d.Size < n {
			return false, fmt.Sprintf("size %s is below minSize %s", config.FormatSize(d.Size), sel.MinSize)
		}
	}
	if sel.MaxSize != "" {
		if n, err := config.ParseSize(sel.MaxSize); err != nil || d.Size > n {
			return false, fmt.Sprintf("size %s is above maxSize %s", config.FormatSize(d.Size), sel.MaxSize)
		}
	}
	for _, f := range []struct{ what, pattern, value string }{{"model", sel.Model, d.Model}, {"serial", sel.Serial, d.Serial}} {
		if f.pattern == "" {
			continue
		}
		if ok, _ := path.Match(f.pattern, f.value); !ok {
			return false, fmt.Sprintf("%s %q does not match %q", f.what, f.value, f.pattern)
		}
	}
	if sel.Type != "" && sel.Type != d.Type {
		return false, fmt.Sprintf("type %s is not %s", d.Type, sel.Type)
	}
	return true, ""
}

func names(disks []Disk) string {
	var n []string
	for _, d := range disks {
		n = append(n, d.Path)
	}
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

// Check refuses a disk the installer must not write: read-only, too small
// for the layout, or holding partitions without wipe.
func Check(d Disk, wipe bool) error {
	if d.ReadOnly {
		return fmt.Errorf("install disk %s is read-only", d.Path)
	}
	if d.Size < MinDiskSize {
		return fmt.Errorf("%w: %s has %s (%d bytes); Ballast needs at least %s (%d bytes)",
			ErrTooSmall, d.Path, config.FormatSize(d.Size), d.Size, config.FormatSize(MinDiskSize), MinDiskSize)
	}
	if len(d.Partitions) > 0 && !wipe {
		return fmt.Errorf("%w: %s has %d partition(s) (%s); set machine.install.wipe: true to overwrite them",
			ErrHasPartitions, d.Path, len(d.Partitions), strings.Join(d.Partitions, ", "))
	}
	return nil
}
