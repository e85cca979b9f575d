package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/install"
	"github.com/ballast-os/ballast/machined/launcher"
	"github.com/ballast-os/ballast/machined/slots"
	"github.com/ballast-os/ballast/pkg/bundle"
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
	if _, err := install.FindMedium(); err != nil && cfg.Machine.Install.Bundle == "" {
		return nil, fmt.Errorf("%w: %w; a machine booted over PXE installs from a bundle: set machine.install.bundle to its http(s) URL", errdefs.ErrFailedPrecondition, err)
	}
	return &d, nil
}

// installAndReboot writes the running build and STATE to disk and reboots
// into the installed system. If the install fails the machine runs on from
// RAM with its config, as if it had no install section, and says why.
func (n *Node) installAndReboot(cfg *config.Config, d install.Disk) {
	if err := n.installTo(context.Background(), cfg, d); err != nil {
		n.log.Error("install failed; the machine runs from RAM (its config is lost at reboot)", "disk", d.Path, "error", err)
		if err := n.startRoleServices(cfg); err != nil {
			n.log.Error("cannot start the role's services", "error", err)
		}
		return
	}
	n.log.Info("installed; rebooting into the installed system (the install medium is no longer needed)", "disk", d.Path)
	n.request(ActionReboot)
}

func (n *Node) installTo(ctx context.Context, cfg *config.Config, d install.Disk) error {
	n.log.Info("install: writing Ballast to disk", "disk", d.Path, "size", config.FormatSize(d.Size), "model", d.Model, "serial", d.Serial)
	src, err := install.MountMedium(mediumDir)
	switch {
	case err == nil:
		defer func() { _ = unix.Unmount(mediumDir, 0) }()
	case errors.Is(err, install.ErrNoMedium) && cfg.Machine.Install.Bundle != "":
		// A PXE boot: the build comes from the bundle the config names.
		dir := filepath.Join(os.TempDir(), "install-bundle")
		defer os.RemoveAll(dir)
		if src, err = fetchInstallBundle(ctx, cfg.Machine.Install.Bundle, dir); err != nil {
			return err
		}
		n.log.Info("install: bundle fetched", "bundle", cfg.Machine.Install.Bundle)
	default:
		return fmt.Errorf("%w (or set machine.install.bundle to the URL of a bundle)", err)
	}
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

// fetchInstallBundle downloads a bundle's kernel, initramfs and component
// images into dir, each checked against the manifest's SHA-256, and
// refuses a bundle for another architecture.
func fetchInstallBundle(ctx context.Context, url, dir string) (install.Source, error) {
	b, err := bundle.Open(ctx, url)
	if err != nil {
		return install.Source{}, err
	}
	if b.Manifest.Arch != runtime.GOARCH {
		return install.Source{}, fmt.Errorf("%w: bundle %s is for %s, this machine is %s", bundle.ErrArch, url, b.Manifest.Arch, runtime.GOARCH)
	}
	kernel, initrds, err := bootFiles(b.Manifest)
	if err != nil {
		return install.Source{}, err
	}
	if err := b.Fetch(ctx, dir, machineKinds...); err != nil {
		return install.Source{}, fmt.Errorf("bundle %s: %w", url, err)
	}
	src := install.Source{Kernel: filepath.Join(dir, kernel), Initramfs: filepath.Join(dir, initrds[0])}
	if len(initrds) > 1 {
		src.Images = filepath.Join(dir, initrds[1])
	}
	return src, nil
}
