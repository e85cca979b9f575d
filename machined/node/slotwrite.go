package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/machined/install"
	"github.com/ballast-os/ballast/machined/slots"
	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/bundle"
)

// machineKinds are the bundle parts a machine's slot holds.
var machineKinds = []string{bundle.KindKernel, bundle.KindInitramfs, bundle.KindImages}

// slotWrite is where an upgrade writes the inactive slot.
type slotWrite struct {
	dir   string   // the slot's directory (the Writer's)
	kinds []string // the bundle parts it holds
	have  func(bundle.Part) string
	// finish completes a committed slot (a machine's boot entry).
	finish func(*bundle.Manifest) error
	// release undoes what openSlot mounted.
	release func()
}

// openSlot prepares slot target for writing. In container mode it is a
// directory; on a machine, the BOOT-A or BOOT-B partition, mounted, and
// emptied first (the fallback is the booted slot; no boot can start the
// target meanwhile, as the record's next was cleared before).
func (n *Node) openSlot(booted, target string) (*slotWrite, error) {
	if n.opts.Mode == ModeContainer {
		return &slotWrite{
			dir: filepath.Join(slots.Dir(n.store.Root()), target), kinds: containerKinds, have: n.heldPart,
			finish: func(*bundle.Manifest) error { return nil }, release: func() {},
		}, nil
	}
	var mounted []string
	release := func() {
		unix.Sync()
		for _, m := range mounted {
			if err := unix.Unmount(m, 0); err != nil {
				n.log.Warn("upgrade: cannot unmount a slot", "dir", m, "error", err)
			}
		}
	}
	mountSlot := func(slot string, flags uintptr) (string, error) {
		dev, err := install.FindPartition("BOOT-" + strings.ToUpper(slot))
		if err != nil {
			return "", err
		}
		dir := "/run/ballast/slot-" + slot
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		if err := unix.Mount(dev, dir, "ext4", flags|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			return "", fmt.Errorf("mount slot %s (%s): %w", slot, dev, err)
		}
		mounted = append(mounted, dir)
		return dir, nil
	}
	bdir, err := mountSlot(booted, unix.MS_RDONLY)
	if err != nil {
		release()
		return nil, err
	}
	tdir, err := mountSlot(target, 0)
	if err != nil {
		release()
		return nil, err
	}
	// The boot entry goes first: a slot without one does not boot.
	for _, p := range []string{"grub", "slot", "slot.new"} {
		if err := os.RemoveAll(filepath.Join(tdir, p)); err != nil {
			release()
			return nil, fmt.Errorf("empty slot %s: %w", target, err)
		}
	}
	cmdline := install.InstalledCmdline(kernelCmdline())
	return &slotWrite{
		dir:   filepath.Join(tdir, "slot"),
		kinds: machineKinds,
		have: func(p bundle.Part) string {
			return slots.Have(p, filepath.Join(bdir, "slot", p.Name))
		},
		finish: func(m *bundle.Manifest) error {
			kernel, initrds, err := bootFiles(m)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Join(tdir, "grub"), 0o755); err != nil {
				return err
			}
			return atomicfile.Write(filepath.Join(tdir, "grub", "grub.cfg"), []byte(install.GrubConfig(target, cmdline, kernel, initrds...)), 0o644)
		},
		release: release,
	}, nil
}

// bootFiles returns a machine bundle's kernel and initrds (the initramfs,
// then the component images if any), or why it cannot boot a machine.
func bootFiles(m *bundle.Manifest) (kernel string, initrds []string, err error) {
	var initramfs, images string
	for _, p := range m.Parts {
		switch p.Kind {
		case bundle.KindKernel:
			kernel = p.Name
		case bundle.KindInitramfs:
			initramfs = p.Name
		case bundle.KindImages:
			images = p.Name
		}
	}
	if kernel == "" || initramfs == "" {
		return "", nil, fmt.Errorf("%w: a machine's bundle needs a kernel and an initramfs part (make bundle writes them)", bundle.ErrInvalid)
	}
	initrds = []string{initramfs}
	if images != "" {
		initrds = append(initrds, images)
	}
	return kernel, initrds, nil
}
