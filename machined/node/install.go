package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/install"
	"github.com/ballast-os/ballast/machined/launcher"
	"github.com/ballast-os/ballast/machined/slots"
	"github.com/ballast-os/ballast/pkg/config"
)

// mediumDir is where the install medium is mounted while it is copied.
const mediumDir = "/run/ballast/medium"

// kernelCmdline is the running kernel's command line.
func kernelCmdline() string {
	b, _ := os.ReadFile("/proc/cmdline")
	return strings.TrimSpace(string(b))
}

// cmdlineSlot is the slot an installed machine's boot loader started
// (ballast.slot), or "" for a live boot (ISO, PXE).
func cmdlineSlot(cmdline string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "ballast.slot="); ok {
			return v
		}
	}
	return ""
}

// bootedFromDisk reports whether this machine booted an installed slot.
func bootedFromDisk(cmdline string) bool { return cmdlineSlot(cmdline) != "" }

// runningSlot is the slot this boot runs: the launcher's in container mode,
// the boot loader's on a machine ("" when it runs from an install medium).
func (n *Node) runningSlot() string {
	if n.opts.Mode == ModeContainer {
		return os.Getenv(launcher.EnvSlot)
	}
	return cmdlineSlot(kernelCmdline())
}

// installTarget returns the disk a first config asks this machine to
// install to, after checking it: nil when there is nothing to install (a
// container-mode node, no install section, or a machine already running
// from its disk). A disk that cannot be used refuses the config, so the
// operator sees why and nothing is changed.
func (n *Node) installTarget(cfg *config.Config) (*install.Disk, error) {
	if n.opts.Mode != ModeMetal || !cfg.Machine.Install.Selected() || bootedFromDisk(kernelCmdline()) {
		return nil, nil
	}
	disks, err := install.Disks("/sys/block")
	if err != nil {
		return nil, err
	}
	d, err := install.Select(disks, cfg.Machine.Install)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	}
	if err := install.Check(d, cfg.Machine.Install.Wipe); err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	}
	return &d, nil
}

// installAndReboot writes the running build and STATE to disk and reboots
// into the installed system. If the install fails the machine runs on from
// RAM with its config, as if it had no install section, and says why.
func (n *Node) installAndReboot(cfg *config.Config, d install.Disk) {
	if err := n.installTo(context.Background(), d); err != nil {
		n.log.Error("install failed; the machine runs from RAM (its config is lost at reboot)", "disk", d.Path, "error", err)
		if err := n.startRoleServices(cfg); err != nil {
			n.log.Error("cannot start the role's services", "error", err)
		}
		return
	}
	n.log.Info("installed; rebooting into the installed system (the install medium is no longer needed)", "disk", d.Path)
	n.request(ActionReboot)
}

func (n *Node) installTo(ctx context.Context, d install.Disk) error {
	n.log.Info("install: writing Ballast to disk", "disk", d.Path, "size", config.FormatSize(d.Size), "model", d.Model, "serial", d.Serial)
	src, err := install.MountMedium(mediumDir)
	if err != nil {
		return err
	}
	defer func() { _ = unix.Unmount(mediumDir, 0) }()
	r := running()
	slotA := slots.Slot{Version: r.Version, CommitTime: r.CommitTime, Written: time.Now()}
	info, err := json.Marshal(slotA)
	if err != nil {
		return err
	}
	// The A/B record's details start on the STATE the disk receives.
	if err := slots.Save(filepath.Join(n.store.StateDir(), slots.FileName), &slots.State{Active: slots.A, Slots: map[string]slots.Slot{slots.A: slotA}}); err != nil {
		return err
	}
	return install.Run(ctx, install.Options{
		Disk:     d,
		Source:   src,
		Kit:      install.KitDir,
		Cmdline:  install.InstalledCmdline(kernelCmdline()),
		StateDir: n.store.StateDir(),
		SlotInfo: info,
		Mkfs:     install.Mkfs,
		Log:      n.log,
	})
}
