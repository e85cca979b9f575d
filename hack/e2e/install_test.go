package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/hack/qemuvm"
	"github.com/ballast-os/ballast/pkg/bundle"
)

// rawDisk makes a sparse raw disk image of size (qemu-img's units).
func rawDisk(t *testing.T, name, size string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if b, err := exec.Command("qemu-img", "create", "-q", "-f", "raw", p, size).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, b)
	}
	return p
}

// TestInstallISO installs as docs/install.md shows, from an install medium
// the test makes like ballast.iso (volume BALLAST, boot/vmlinuz and
// boot/initramfs.xz) but without the 413 MB of component images, and boots
// agent-only machines (ballast.kubernetes=false): the test boots the machine
// seven times, ~30 s each under TCG instead of ~90 s. ballast.iso itself
// boots in TestBootISO; make bench installs it whole.
//
// The medium's machine has three blank disks: a config naming a disk that
// is too small, then one that holds a partition, then a selector that
// matches nothing is refused with the reason and the machine stays in
// maintenance mode; a diskSelector picks the 6 GiB disk, the machine
// installs and reboots. Started again from that disk alone (SeaBIOS) it
// comes back configured on slot A; etcd is bootstrapped; then an upgrade to a
// second build, a rollback, a build whose /init exits (kernel panic → slot A
// by itself, the upgrade reported failed), a power cut while slot B is
// written (slot A boots), and a last boot with OVMF — with the same etcd
// member throughout: its data lives on the disk's EPHEMERAL.
func TestInstallISO(t *testing.T) {
	out := outDir(t)
	medium := installMedium(t, out)
	target := rawDisk(t, "target.raw", "6G")
	small := rawDisk(t, "small.raw", "2G")
	used := rawDisk(t, "used.raw", "4G")
	if b, err := exec.Command("sgdisk", "-o", "-n", "1:1M:+100M", "-c", "1:data", used).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v: %s", err, b)
	}
	drive := func(p string) []string { return []string{"-drive", "file=" + p + ",if=virtio,format=raw"} }
	args := []string{"-kernel", filepath.Join(out, "vmlinuz"), "-initrd", filepath.Join(out, "initramfs.xz"),
		"-append", "console=ttyS0,115200 panic=10 ballast.platform=metal ballast.kubernetes=false", "-cdrom", medium, "-no-reboot"}
	for _, d := range []string{target, small, used} {
		args = append(args, drive(d)...)
	}
	v := bootVM(t, "", args...)
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range strings.Split(v.Console(), "\n") {
				if strings.Contains(l, "install") {
					t.Log(l)
				}
			}
		}
	})
	m := v.waitConsole(applyLineRE, 0, bootTimeout)

	apply := func(dir string, install string) run {
		gen := genConfig(t, "inst1", "https://10.0.2.15:6443", "--config-patch",
			`{"machine":{"certSANs":["127.0.0.1"],"network":{"hostname":"inst1"},"time":{"disabled":true},"install":`+install+`}}`)
		if dir != "" {
			gen = dir
		}
		return nodectl(t, "apply-config", "--insecure", "-n", v.node(), "--cert-fingerprint", m[2], "--file", filepath.Join(gen, "controlplane.yaml"))
	}
	for _, tt := range []struct{ install, want string }{
		{`{"disk":"/dev/vdb"}`, "/dev/vdb has 2.0 GiB (2147483648 bytes); Ballast needs at least 2.7 GiB"},
		{`{"disk":"/dev/vdc"}`, "/dev/vdc has 1 partition(s) (vdc1); set machine.install.wipe: true"},
		{`{"diskSelector":{"model":"NoSuchDisk*"}}`, `/dev/vda: model "" does not match "NoSuchDisk*"`},
	} {
		r := apply("", tt.install)
		if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
			t.Fatalf("install %s: want a refusal with %q, got %s", tt.install, tt.want, r)
		}
	}
	if b, err := exec.Command("sgdisk", "-p", used).CombinedOutput(); err != nil || !strings.Contains(string(b), "data") {
		t.Fatalf("the refused disk was changed: %v: %s", err, b)
	}

	dir := genConfig(t, "inst1", "https://10.0.2.15:6443", "--config-patch",
		`{"machine":{"certSANs":["127.0.0.1"],"network":{"hostname":"inst1"},"time":{"disabled":true},"install":{"diskSelector":{"minSize":"5GB"}}}}`)
	start := time.Now()
	r := apply(dir, "")
	if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "installing to /dev/vda (6.0 GiB)") {
		t.Fatalf("apply-config with an install disk: %s", r)
	}
	v.waitConsole(regexp.MustCompile(`msg="install: done"`), 0, 5*time.Minute)
	v.waitExit(2 * time.Minute)
	t.Logf("installed in %s (apply → reboot)", time.Since(start).Round(time.Second))
	b, err := exec.Command("sgdisk", "-p", target).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v: %s", err, b)
	}
	for _, name := range []string{"EFI", "BIOS", "BOOT-A", "BOOT-B", "STATE", "EPHEMERAL"} {
		if !strings.Contains(string(b), name) {
			t.Errorf("the installed disk lacks partition %s:\n%s", name, b)
		}
	}

	// Without the medium: the disk boots (SeaBIOS), configured from its
	// STATE. From here each reboot starts qemu again (qemuvm.Machine).
	nc := filepath.Join(dir, "nodeconfig")
	mach := bootMachine(t, drive(target)...)
	node := mach.Node()
	waitMachine(t, mach, regexp.MustCompile(`init: STATE: /dev/vda5 mounted on /system/state`), 0, bootTimeout)
	waitMachine(t, mach, regexp.MustCompile(`msg="machine config loaded" type=controlplane`), 0, time.Minute)
	if !strings.Contains(mach.Console(), "ballast.slot=a") || !strings.Contains(mach.Console(), "Ballast: booting slot a") {
		t.Errorf("the installed system did not boot slot A from the disk")
	}
	bootstrapAndWaitEtcd(t, nc, node, "inst1")
	member := etcdMemberID(t, nc, node)
	first := machineVersion(t, nc, node)
	if !strings.HasSuffix(first, "slot a") {
		t.Fatalf("nodectl version: %q, want slot a", first)
	}

	// Upgrade to a second build: the initramfs with another machined as
	// /init (a second archive the kernel unpacks over the first).
	work := t.TempDir()
	next := filepath.Join(work, "next")
	agent := filepath.Join(work, "machined-next")
	buildMachined(t, agent, "v0.0.0-e2e-next", time.Now().Add(time.Hour))
	machineBundle(t, next, out, agent, bundle.Manifest{Version: "v0.0.0-e2e-next", CommitTime: time.Now().Add(time.Hour)})
	start = time.Now()
	r = longNodectl(t, nc, "-n", node, "upgrade", "--bundle", next, "--health-timeout", "5m")
	if r.code != 0 {
		t.Fatalf("upgrade: %s", r)
	}
	t.Logf("upgrade command → healthy on slot b: %s", time.Since(start).Round(time.Second))
	if got := machineVersion(t, nc, node); got != "v0.0.0-e2e-next slot b" {
		t.Fatalf("after the upgrade: %q", got)
	}
	if !strings.Contains(mach.Console(), "Ballast: booting slot b") {
		t.Errorf("GRUB did not say it booted slot b")
	}
	waitEtcdMember(t, nc, node, "inst1")
	if id := etcdMemberID(t, nc, node); id != member {
		t.Fatalf("etcd member %s after the upgrade, was %s: the data was not kept", id, member)
	}

	// Back on demand.
	start = time.Now()
	if r = longNodectl(t, nc, "-n", node, "rollback", "--health-timeout", "5m"); r.code != 0 {
		t.Fatalf("rollback: %s", r)
	}
	t.Logf("rollback command → healthy on slot a: %s", time.Since(start).Round(time.Second))
	if got := machineVersion(t, nc, node); got != first {
		t.Fatalf("after the rollback: %q, want %q", got, first)
	}

	// A build whose /init exits at once: the kernel panics (panic=10
	// reboots it), GRUB boots slot A by itself, the upgrade reports it.
	broken := filepath.Join(work, "broken")
	exit1 := filepath.Join(work, "exit1")
	buildExit1(t, exit1)
	machineBundle(t, broken, out, exit1, bundle.Manifest{Version: "v0.0.0-e2e-broken", CommitTime: time.Now().Add(2 * time.Hour)})
	start = time.Now()
	r = longNodectl(t, nc, "-n", node, "upgrade", "--bundle", broken, "--health-timeout", "5m")
	if r.code == 0 || !strings.Contains(r.stderr, "slot b did not come up") {
		t.Fatalf("upgrade to a broken build: want a failure that says slot b did not come up, got %s", r)
	}
	t.Logf("broken build → reported, back on slot a: %s", time.Since(start).Round(time.Second))
	if got := machineVersion(t, nc, node); got != first {
		t.Fatalf("after the failed upgrade: %q, want %q", got, first)
	}
	if !strings.Contains(mach.Console(), "Kernel panic") {
		t.Errorf("the broken build did not end in a kernel panic")
	}

	// Power cut while slot B is written: the machine boots slot A. This
	// bundle carries the 413 MB of component images, which slot A does not
	// hold, so the write lasts long enough to be cut.
	big := filepath.Join(work, "big")
	if err := qemuvm.MachineBundle(big, out, agent, bundle.Manifest{Version: "v0.0.0-e2e-big", CommitTime: time.Now().Add(3 * time.Hour)}, true); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "nodectl"), "--nodeconfig", nc, "-n", node, "upgrade", "--bundle", big)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	written := regexp.MustCompile(`msg="upgrade: slot written"`)
	before := len(written.FindAllString(mach.Console(), -1))
	waitMachine(t, mach, regexp.MustCompile(`msg="upgrade: receiving a bundle" version=v0.0.0-e2e-big slot=b parts_sent=2`), 0, 2*time.Minute)
	time.Sleep(3 * time.Second)
	booted := mach.Boots()
	mach.PowerCut()
	if n := len(written.FindAllString(mach.Console(), -1)); n != before {
		t.Fatalf("the slot was written whole before the power cut: the test cut nothing")
	}
	waitFor(t, "the machine back after the power cut", 3*time.Minute, func() error {
		if mach.Boots() == booted {
			return errors.New("not restarted yet")
		}
		return nil
	})
	if got := machineVersion(t, nc, node); got != first {
		t.Fatalf("after the power cut: %q, want %q", got, first)
	}
	waitEtcdMember(t, nc, node, "inst1")
	mach.Stop()

	// Again with UEFI: slot A, the same member, from the disk's EPHEMERAL.
	mach = bootMachine(t, append(ovmf(t), drive(target)...)...)
	waitMachine(t, mach, regexp.MustCompile(`msg="machine config loaded" type=controlplane`), 0, bootTimeout)
	waitEtcdMember(t, nc, mach.Node(), "inst1")
	if got := machineVersion(t, nc, mach.Node()); got != first {
		t.Fatalf("with UEFI: %q, want %q", got, first)
	}
	if id := etcdMemberID(t, nc, mach.Node()); id != member {
		t.Fatalf("etcd member %s at the end, was %s", id, member)
	}
}

// bootMachine starts a qemuvm.Machine, stopped (by PID) when the test ends;
// its console's tail is logged on failure.
func bootMachine(t *testing.T, args ...string) *qemuvm.Machine {
	t.Helper()
	requireRoot(t)
	m, err := qemuvm.StartMachine("", args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			t.Logf("console of the machine (%d boots):\n%s", m.Boots(), tail(m.Console(), 150))
		}
	})
	return m
}

func waitMachine(t *testing.T, m *qemuvm.Machine, re *regexp.Regexp, skip int, timeout time.Duration) []string {
	t.Helper()
	s, err := m.WaitConsole(re, skip, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// installMedium makes an install medium like ballast.iso without the
// component images: volume BALLAST, boot/vmlinuz, boot/initramfs.xz.
func installMedium(t *testing.T, out string) string {
	t.Helper()
	tree := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tree, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vmlinuz", "initramfs.xz"} {
		if b, err := exec.Command("cp", filepath.Join(out, f), filepath.Join(tree, "boot", f)).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v: %s", err, b)
		}
	}
	iso := filepath.Join(t.TempDir(), "medium.iso")
	if b, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-V", "BALLAST", "-r", "-o", iso, tree).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v: %s", err, b)
	}
	return iso
}

// machineVersion is the node's line of `nodectl version`, from "machined".
func machineVersion(t *testing.T, nc, node string) string {
	t.Helper()
	var line string
	waitFor(t, "nodectl version", 3*time.Minute, func() error {
		r, err := runNodectl(nc, "-n", node, "version")
		if err != nil {
			return err
		}
		for _, l := range lines(r.stdout) {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, "machined ") {
				line = l
				return nil
			}
		}
		return errors.New(r.String())
	})
	// "machined VERSION (commit, committed …, go…) os/arch, metal mode,
	// slot X, configured": the version and the slot.
	slot := "no slot"
	if m := regexp.MustCompile(`, (slot [ab]),`).FindStringSubmatch(line); m != nil {
		slot = m[1]
	}
	return strings.Fields(line)[1] + " " + slot
}

// etcdMemberID is the ID of the node's etcd member.
func etcdMemberID(t *testing.T, nc, node string) string {
	t.Helper()
	r := mustNodectl(t, "--nodeconfig", nc, "-n", node, "etcd", "members")
	for _, l := range lines(r.stdout) {
		if f := strings.Fields(l); len(f) > 2 && f[2] == "inst1" { // NODE ID NAME …
			return f[1]
		}
	}
	t.Fatalf("no member inst1 in:\n%s", r.stdout)
	return ""
}

// longNodectl runs nodectl for commands that outlast runNodectl's minute
// (an upgrade waits for the machine's reboot and health gate).
func longNodectl(t *testing.T, nc string, args ...string) run {
	t.Helper()
	r, err := runNodectlFor(15*time.Minute, nc, args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// machineBundle writes an agent-only machine bundle whose /init is init.
func machineBundle(t *testing.T, dir, out, init string, m bundle.Manifest) {
	t.Helper()
	if err := qemuvm.MachineBundle(dir, out, init, m, false); err != nil {
		t.Fatal(err)
	}
}

// buildExit1 builds a static program that exits 1 at once: an /init that
// makes the kernel panic.
func buildExit1(t *testing.T, out string) {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nimport \"os\"\n\nfunc main() { os.Exit(1) }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module exit1\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build exit1: %v: %s", err, b)
	}
}

// TestInstallPXE installs a machine booted over PXE (agent.ipxe, slirp's
// TFTP), which has no install medium: a config without
// machine.install.bundle is refused with the reason; with the URL of a
// bundle served by the test on the host, the machine fetches the kernel and
// initramfs (each SHA-256 checked: pkg/bundle's tests refuse a mismatch),
// installs, and boots from its disk alone configured.
func TestInstallPXE(t *testing.T) {
	out := outDir(t)
	work := t.TempDir()
	good := filepath.Join(work, "bundle")
	if err := qemuvm.MachineBundle(good, out, filepath.Join(binDir, "machined"), bundle.Manifest{Version: "v0.0.0-e2e-pxe", CommitTime: time.Now()}, false); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(work))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	url := fmt.Sprintf("http://10.0.2.2:%d/bundle", ln.Addr().(*net.TCPAddr).Port)

	target := rawDisk(t, "target.raw", "4G")
	drive := []string{"-drive", "file=" + target + ",if=virtio,format=raw"}
	v := bootVM(t, "tftp="+filepath.Join(out, "pxe")+",bootfile=agent.ipxe", append([]string{"-boot", "n", "-no-reboot"}, drive...)...)
	m := v.waitConsole(applyLineRE, 0, bootTimeout)
	cfg := func(install string) string {
		return filepath.Join(genConfig(t, "pxeinst", "https://10.0.2.15:6443", "--config-patch",
			`{"machine":{"certSANs":["127.0.0.1"],"network":{"hostname":"pxeinst"},"time":{"disabled":true},"install":`+install+`}}`), "controlplane.yaml")
	}
	r := nodectl(t, "apply-config", "--insecure", "-n", v.node(), "--cert-fingerprint", m[2], "--file", cfg(`{"disk":"/dev/vda"}`))
	if r.code == 0 || !strings.Contains(r.stderr, "no ISO labelled BALLAST is attached; a machine booted over PXE installs from a bundle: set machine.install.bundle") {
		t.Fatalf("install without a medium or a bundle: want a refusal, got %s", r)
	}
	file := cfg(`{"disk":"/dev/vda","bundle":"` + url + `"}`)
	dir := filepath.Dir(file)
	r = mustNodectl(t, "apply-config", "--insecure", "-n", v.node(), "--cert-fingerprint", m[2], "--file", file)
	if !strings.Contains(r.stdout+r.stderr, "installing to /dev/vda") {
		t.Fatalf("apply-config: %s", r)
	}
	v.waitConsole(regexp.MustCompile(`msg="install: bundle fetched"`), 0, 3*time.Minute)
	v.waitConsole(regexp.MustCompile(`msg="install: done"`), 0, 3*time.Minute)
	v.waitExit(2 * time.Minute)

	mach := bootMachine(t, drive...)
	waitMachine(t, mach, regexp.MustCompile(`msg="machine config loaded" type=controlplane`), 0, bootTimeout)
	if got := machineVersion(t, filepath.Join(dir, "nodeconfig"), mach.Node()); !strings.HasSuffix(got, "slot a") {
		t.Fatalf("the installed machine: %q, want slot a", got)
	}
}
