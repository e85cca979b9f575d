package cluster

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ballast-os/ballast/pkg/config"
)

// Provisioners: how a local cluster's nodes run.
const (
	ProvisionerNetns = "netns" // machined in container mode, one network namespace per node
	ProvisionerQEMU  = "qemu"  // a qemu VM per node booting the OS artifacts
)

// vmArtifacts are the OS artifacts a VM node boots (make images); a node
// with Kubernetes also boots imagesArtifact, the component images.
var vmArtifacts = []string{"vmlinuz", "initramfs.xz", "disk.qcow2"}

const imagesArtifact = "images.cpio"

// checkArtifacts verifies the artifacts directory.
func checkArtifacts(dir string, kubernetes bool) error {
	for _, f := range vmArtifacts {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("OS artifact %s: %w (build them with 'make images' or pass --artifacts)", f, err)
		}
	}
	if kubernetes {
		if _, err := os.Stat(filepath.Join(dir, imagesArtifact)); err != nil {
			return fmt.Errorf("OS artifact %s (the Kubernetes component images): %w ('make images' builds it; --no-kubernetes boots without it)", imagesArtifact, err)
		}
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "dnsmasq"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is needed by --provisioner qemu (hack/install-deps.sh qemu image test): %w", tool, err)
		}
	}
	return nil
}

// kubernetes reports whether the cluster's nodes run Kubernetes.
func (st *State) kubernetes() bool { return !slices.Contains(st.MachinedArgs, "--kubernetes=false") }

// vmInitrd is the initrd VM nodes boot. With Kubernetes it is the
// initramfs followed by the component images, written once into the
// cluster's directory: qemu loads one initrd file, and the kernel unpacks
// concatenated archives in turn (as a boot loader given two initrds does).
func vmInitrd(st *State) (string, error) {
	base := filepath.Join(st.Artifacts, "initramfs.xz")
	if !st.kubernetes() {
		return base, nil
	}
	path := filepath.Join(st.Dir, "initrd.img")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("VM initrd: %w", err)
	}
	defer f.Close()
	for _, part := range []string{base, filepath.Join(st.Artifacts, imagesArtifact)} {
		in, err := os.Open(part)
		if err != nil {
			return "", fmt.Errorf("VM initrd: %w", err)
		}
		_, err = io.Copy(f, in)
		in.Close()
		if err != nil {
			return "", fmt.Errorf("VM initrd: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("VM initrd: %w", err)
	}
	return path, nil
}

// vmMemMiB is a VM node's memory: the agent and etcd fit in 1.5 GiB; with
// Kubernetes the unpacked component images (in RAM, then in containerd's
// store on the disk) and the components need more, control planes most.
func vmMemMiB(st *State, node NodeState) int {
	switch {
	case !st.kubernetes():
		return 1536
	case node.Role == config.TypeControlPlane:
		return 3072
	default:
		return 2560
	}
}

// nodeMAC derives a node's MAC (QEMU's 52:54:00 prefix) from its address.
func nodeMAC(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[1], b[2], b[3])
}

// startDHCP runs Debian's dnsmasq on the bridge as the VMs' DHCP server,
// each node's MAC bound to its planned address (no DNS: --port=0). It
// daemonizes; its PID is recorded for destroy.
func startDHCP(ctx context.Context, st *State, p netip.Prefix) (int, error) {
	pidFile := filepath.Join(st.Dir, "dnsmasq.pid")
	args := []string{"--conf-file=/dev/null", "--port=0", "--interface=" + st.Bridge, "--bind-interfaces", "--except-interface=lo",
		"--dhcp-range=" + p.Addr().String() + ",static," + prefixMask(p) + ",12h",
		"--dhcp-option=option:router," + st.Gateway, "--dhcp-option=option:dns-server," + st.Gateway,
		"--pid-file=" + pidFile, "--dhcp-leasefile=" + filepath.Join(st.Dir, "dnsmasq.leases"),
		"--log-facility=" + filepath.Join(st.Dir, "dnsmasq.log"), "--log-dhcp"}
	for _, n := range st.Nodes {
		a, err := netip.ParseAddr(n.Address)
		if err != nil {
			return 0, err
		}
		args = append(args, "--dhcp-host="+nodeMAC(a)+","+n.Address+","+n.Name)
	}
	if out, err := exec.CommandContext(ctx, "dnsmasq", args...).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("dnsmasq: %v: %s", err, strings.TrimSpace(string(out)))
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, fmt.Errorf("dnsmasq pid: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

func prefixMask(p netip.Prefix) string {
	m := uint32(0xffffffff) << (32 - p.Bits())
	return fmt.Sprintf("%d.%d.%d.%d", m>>24, m>>16&255, m>>8&255, m&255)
}

// startVM creates the node's tap on the bridge and its disk (a qcow2
// overlay on the image's disk), and boots qemu (TCG) with the image's kernel
// and initramfs, console to console.log in the node's directory. qemu
// daemonizes; its PID is returned.
func startVM(ctx context.Context, st *State, node NodeState, initrd string) (int, error) {
	if err := os.MkdirAll(node.StateDir, 0o700); err != nil {
		return 0, err
	}
	for _, s := range [][]string{
		{"tuntap", "add", "dev", node.Veth, "mode", "tap"},
		{"link", "set", node.Veth, "master", st.Bridge, "up"},
	} {
		if err := ip(ctx, s...); err != nil {
			return 0, fmt.Errorf("node %s: %w", node.Name, err)
		}
	}
	disk := filepath.Join(node.StateDir, "disk.qcow2")
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
		"-b", filepath.Join(st.Artifacts, "disk.qcow2"), disk).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("node %s disk: %v: %s", node.Name, err, out)
	}
	a, err := netip.ParseAddr(node.Address)
	if err != nil {
		return 0, err
	}
	pidFile := filepath.Join(node.StateDir, "qemu.pid")
	cmdline := "console=ttyS0,115200 panic=10 ballast.platform=metal"
	if !st.kubernetes() {
		cmdline += " ballast.kubernetes=false"
	}
	args := []string{"-name", st.Name + "-" + node.Name, "-accel", "tcg", "-m", strconv.Itoa(vmMemMiB(st, node)), "-smp", "2",
		"-display", "none", "-monitor", "none", "-serial", "file:" + node.consoleLog(),
		"-kernel", filepath.Join(st.Artifacts, "vmlinuz"), "-initrd", initrd, "-append", cmdline,
		"-drive", "file=" + disk + ",if=virtio,format=qcow2",
		"-netdev", "tap,id=n0,ifname=" + node.Veth + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=" + nodeMAC(a), "-device", "virtio-rng-pci",
		"-daemonize", "-pidfile", pidFile}
	if out, err := exec.CommandContext(ctx, "qemu-system-x86_64", args...).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("start VM %s: %v: %s", node.Name, err, strings.TrimSpace(string(out)))
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, fmt.Errorf("VM %s pid: %w", node.Name, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// consoleLog is where a VM node's serial console is written.
func (n NodeState) consoleLog() string { return filepath.Join(n.StateDir, "console.log") }

// agentLog is the file the node's agent logs to: machined's output in
// container mode, the VM's console otherwise.
func (n NodeState) agentLog(provisioner string) string {
	if provisioner == ProvisionerQEMU {
		return n.consoleLog()
	}
	return filepath.Join(n.StateDir, "machined.log")
}

// killOwned SIGKILLs a qemu or dnsmasq that Create started, if pid still is
// it (its command line names dir), and waits for it to go. A VM is powered
// off at once: destroy throws its disk away.
func killOwned(pid int, dir string) {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !strings.Contains(string(cmdline), dir) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
}
