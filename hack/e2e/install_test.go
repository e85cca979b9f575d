package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
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

// TestInstallISO installs from the ISO as docs/install.md shows: the VM boots
// the ISO with three blank disks; a config naming a disk that is too small,
// then one that holds a partition, is refused with the reason and the machine
// stays in maintenance mode; a diskSelector picks the 6 GiB disk, the
// machine installs and reboots. Started again from that disk alone (SeaBIOS,
// then OVMF) it comes back configured, and its etcd member, made after the
// install, is there after the reboot: the data lives on the disk's
// EPHEMERAL.
func TestInstallISO(t *testing.T) {
	out := outDir(t)
	target := rawDisk(t, "target.raw", "6G")
	small := rawDisk(t, "small.raw", "2G")
	used := rawDisk(t, "used.raw", "4G")
	if b, err := exec.Command("sgdisk", "-o", "-n", "1:1M:+100M", "-c", "1:data", used).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v: %s", err, b)
	}
	drive := func(p string) []string { return []string{"-drive", "file=" + p + ",if=virtio,format=raw"} }
	args := []string{"-cdrom", filepath.Join(out, "ballast.iso"), "-boot", "d", "-no-reboot"}
	for _, d := range []string{target, small, used} {
		args = append(args, drive(d)...)
	}
	v := bootVM(t, "", args...)
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

	// Without the ISO: the disk boots (BIOS), configured from its STATE.
	nc := filepath.Join(dir, "nodeconfig")
	v = bootVM(t, "", append(drive(target), "-no-reboot")...)
	v.waitConsole(regexp.MustCompile(`init: STATE: /dev/vda5 mounted on /system/state`), 0, bootTimeout)
	v.waitConsole(regexp.MustCompile(`msg="machine config loaded" type=controlplane`), 0, time.Minute)
	bootstrapAndWaitEtcd(t, nc, v.node(), "inst1")
	if r := mustNodectl(t, "--nodeconfig", nc, "-n", v.node(), "version"); !strings.Contains(r.stdout, "slot a") {
		t.Errorf("nodectl version does not show slot a:\n%s", r.stdout)
	}
	if strings.Contains(v.Console(), "initrd /boot") || !strings.Contains(v.Console(), "ballast.slot=a") {
		t.Errorf("the installed system did not boot slot A from the disk")
	}
	mustNodectl(t, "--nodeconfig", nc, "-n", v.node(), "reboot")
	v.waitExit(2 * time.Minute)

	// Again with UEFI: the same member, from the disk's EPHEMERAL.
	v = bootVM(t, "", append(append(ovmf(t), drive(target)...), "-no-reboot")...)
	v.waitConsole(regexp.MustCompile(`msg="machine config loaded" type=controlplane`), 0, bootTimeout)
	waitEtcdMember(t, nc, v.node(), "inst1")
	if _, err := os.Stat(target); err != nil {
		t.Fatal(err)
	}
}
