// Package install writes Ballast to a machine's disk: the GPT layout of the
// cloud disk (EFI, BIOS boot, BOOT-A, BOOT-B, STATE, EPHEMERAL), GRUB for
// both firmwares, the running build into slot A and the machine's STATE,
// so that the machine boots from the disk without its install medium. It
// also grows EPHEMERAL to the end of a disk larger than its table says (a
// cloud disk on a larger volume).
//
// Filesystems are made by e2fsprogs' mkfs.ext4 and grown by resize2fs, both
// in the initramfs: writing ext4 by hand is no job for an installer.
package install

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/pkg/atomicfile"
)

// KitDir is where the initramfs carries the boot loader for the disk:
// boot.img and core.img (GRUB for BIOS) and efi.img.gz (the EFI system
// partition: BOOTX64.EFI and GRUB's environment block).
const KitDir = "/usr/share/ballast/install"

// Mkfs and Resize2fs are e2fsprogs' tools in the initramfs.
const (
	Mkfs      = "/usr/sbin/mkfs.ext4"
	Resize2fs = "/usr/sbin/resize2fs"
)

// Source is the build installed into slot A: files of the install medium.
type Source struct {
	Kernel    string // vmlinuz
	Initramfs string // initramfs.xz
	Images    string // images.cpio; empty for a medium without component images
}

// Options says what to install where.
type Options struct {
	Disk   Disk
	Source Source
	// Kit is the directory of boot.img, core.img and efi.img.gz.
	Kit string
	// Cmdline is the installed system's kernel command line.
	Cmdline string
	// StateDir is the running STATE, copied to the disk's STATE.
	StateDir string
	// SlotInfo is written next to the slot's files (what the slot holds).
	SlotInfo []byte
	// Mkfs is the mkfs.ext4 to run.
	Mkfs string
	Log  *slog.Logger
}

// Run installs. The disk must have passed Check. A failure part-way leaves
// a disk that does not boot (its slot A has no grub.cfg until the very end).
func Run(ctx context.Context, o Options) error {
	start := time.Now()
	bootImg, err := os.ReadFile(filepath.Join(o.Kit, "boot.img"))
	if err != nil {
		return fmt.Errorf("install kit: %w", err)
	}
	coreImg, err := os.ReadFile(filepath.Join(o.Kit, "core.img"))
	if err != nil {
		return fmt.Errorf("install kit: %w", err)
	}
	efiGz, err := os.Open(filepath.Join(o.Kit, "efi.img.gz"))
	if err != nil {
		return fmt.Errorf("install kit: %w", err)
	}
	defer efiGz.Close()
	efi, err := gzip.NewReader(efiGz)
	if err != nil {
		return fmt.Errorf("install kit: efi.img.gz: %w", err)
	}

	// O_EXCL on a block device: refused while anything has it mounted.
	f, err := os.OpenFile(o.Disk.Path, os.O_RDWR|unix.O_EXCL, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", o.Disk.Path, err)
	}
	defer f.Close() // a second Close after the one below is harmless
	// Old signatures at the start (a previous MBR, GPT or filesystem)
	// must not survive beside the new table.
	if _, err := f.WriteAt(make([]byte, MiB), 0); err != nil {
		return fmt.Errorf("clear the start of %s: %w", o.Disk.Path, err)
	}
	if err := writeTable(f, o.Disk.Size); err != nil {
		return err
	}
	if err := writeBootCode(f, bootImg, coreImg, efi); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", o.Disk.Path, err)
	}
	if err := rereadPartitions(ctx, f, o.Disk.Path); err != nil {
		return err
	}
	// The exclusive open would make mkfs find the partitions in use.
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", o.Disk.Path, err)
	}
	o.Log.Info("install: partition table and boot loader written", "disk", o.Disk.Path)

	for i, p := range Layout {
		args := []string{"-q", "-F", "-t", "ext4", "-L", p.Name}
		switch p.Name {
		case PartBootA, PartBootB:
			// Slots are written whole and switched by the boot loader's
			// record: no journal.
			args = append(args, "-O", "^has_journal")
		case PartState, PartEphemeral:
		default:
			continue
		}
		dev := PartitionDevice(o.Disk.Path, i+1)
		if out, err := exec.CommandContext(ctx, o.Mkfs, append(args, dev)...).CombinedOutput(); err != nil {
			return fmt.Errorf("make the %s filesystem on %s: %w: %s", p.Name, dev, err, strings.TrimSpace(string(out)))
		}
	}
	o.Log.Info("install: filesystems made", "disk", o.Disk.Path)

	if err := withMount(PartitionDevice(o.Disk.Path, 5), func(dir string) error {
		return copyTree(o.StateDir, dir)
	}); err != nil {
		return fmt.Errorf("copy STATE: %w", err)
	}
	if err := withMount(PartitionDevice(o.Disk.Path, 3), func(dir string) error {
		return writeSlot(dir, "a", o)
	}); err != nil {
		return fmt.Errorf("write slot A: %w", err)
	}
	unix.Sync()
	o.Log.Info("install: done", "disk", o.Disk.Path, "took", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// rereadPartitions asks the kernel to read the new table and waits for the
// partitions' device nodes.
func rereadPartitions(ctx context.Context, f *os.File, disk string) error {
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0); err != nil {
		return fmt.Errorf("re-read the partition table of %s: %w", disk, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		missing := ""
		for i := range Layout {
			if dev := PartitionDevice(disk, i+1); !exists(dev) {
				missing = dev
				break
			}
		}
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("partition %s did not appear", missing)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// withMount mounts the ext4 filesystem of dev on a temporary directory
// for fn, then unmounts it.
func withMount(dev string, fn func(dir string) error) (err error) {
	dir, err := os.MkdirTemp("", "install-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	if err := unix.Mount(dev, dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount %s: %w", dev, err)
	}
	defer func() {
		if uerr := unix.Unmount(dir, 0); uerr != nil && err == nil {
			err = fmt.Errorf("unmount %s: %w", dev, uerr)
		}
	}()
	return fn(dir)
}

// writeSlot copies the build into dir/slot and writes grub/grub.cfg last:
// a slot without it does not boot.
func writeSlot(dir, slot string, o Options) error {
	sd := filepath.Join(dir, "slot")
	if err := os.MkdirAll(sd, 0o755); err != nil {
		return err
	}
	files := map[string]string{"vmlinuz": o.Source.Kernel, "initramfs.xz": o.Source.Initramfs}
	if o.Source.Images != "" {
		files["images.cpio"] = o.Source.Images
	}
	for name, src := range files {
		if err := copyFile(src, filepath.Join(sd, name), 0o644); err != nil {
			return err
		}
	}
	if len(o.SlotInfo) > 0 {
		if err := atomicfile.Write(filepath.Join(sd, "slot.json"), o.SlotInfo, 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "grub"), 0o755); err != nil {
		return err
	}
	initrds := []string{"initramfs.xz"}
	if o.Source.Images != "" {
		initrds = append(initrds, "images.cpio")
	}
	return atomicfile.Write(filepath.Join(dir, "grub", "grub.cfg"), []byte(GrubConfig(slot, o.Cmdline, "vmlinuz", initrds...)), 0o644)
}

// copyFile copies src to dst and syncs it.
func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyTree copies the regular files, directories and symbolic links under
// src into dst, keeping their modes.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if rel == "lost+found" {
				return filepath.SkipDir
			}
			return os.MkdirAll(target, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case d.Type().IsRegular():
			return copyFile(p, target, info.Mode().Perm())
		}
		return nil // sockets, devices: nothing STATE keeps
	})
}

// ErrNoMedium means the running system has no copy of its boot files to
// install from.
var ErrNoMedium = errors.New("no install medium")
