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
	"sync/atomic"
	"testing"
	"time"

	"github.com/ballast-os/ballast/hack/qemuvm"
)

// The boot tests run the OS artifacts of `make images` (hack/build-os.sh) in
// qemu with TCG and slirp user networking: qemu's DHCP server leases the
// guest 10.0.2.15, its TFTP server serves the PXE folder, and a forwarded
// port on 127.0.0.1 reaches the machine API.

// bootTimeout bounds one boot under TCG (~30 s here, more on a busy host).
const bootTimeout = 4 * time.Minute

// outDir holds the OS artifacts.
func outDir(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	dir := os.Getenv("BALLAST_OUT_DIR")
	if dir == "" {
		dir = "../../_out"
	}
	for _, f := range []string{"vmlinuz", "initramfs.xz", "pxe/agent.ipxe", "images.cpio", "ballast.iso", "disk.qcow2"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("OS artifact missing (make images builds them): %v", err)
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// vm is one qemu process of a test.
type vm struct {
	*qemuvm.VM
	t *testing.T
}

// bootVM starts qemu (qemuvm) with the extra arguments; netdev adds options
// to the user network. The VM is killed (by PID) when the test ends and its
// console is logged on failure.
func bootVM(t *testing.T, netdev string, args ...string) *vm {
	t.Helper()
	requireRoot(t)
	q, err := qemuvm.Start(netdev, args...)
	if err != nil {
		t.Fatal(err)
	}
	v := &vm{VM: q, t: t}
	t.Cleanup(func() {
		q.Kill()
		if t.Failed() {
			t.Logf("console of the VM:\n%s", tail(q.Console(), 150))
		}
	})
	return v
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// node is the VM's machine API address for nodectl.
func (v *vm) node() string { return v.Node() }

func (v *vm) waitConsole(re *regexp.Regexp, skip int, timeout time.Duration) []string {
	v.t.Helper()
	m, err := v.WaitConsole(re, skip, timeout)
	if err != nil {
		v.t.Fatal(err)
	}
	return m
}

func (v *vm) waitExit(timeout time.Duration) {
	v.t.Helper()
	if err := v.Wait(timeout); err != nil {
		v.t.Fatalf("the VM did not end cleanly: %v", err)
	}
}

// checkCleanEnd asserts the console shows init stopping everything and
// ending the machine the way asked, and no kernel panic.
func (v *vm) checkCleanEnd(what string, unmounted ...string) {
	v.t.Helper()
	c := v.Console()
	for _, want := range append([]string{"init: " + what + ": stopping every process", "init: " + what + " now"}, unmounted...) {
		if !strings.Contains(c, want) {
			v.t.Errorf("console lacks %q", want)
		}
	}
	if strings.Contains(c, "Kernel panic") {
		v.t.Errorf("the kernel panicked")
	}
}

var applyLineRE = regexp.MustCompile(`nodectl apply-config --insecure -n (10\.0\.2\.15) --cert-fingerprint ([0-9a-f]{64})`)

// vmConfig generates a cluster whose API certificate also names 127.0.0.1
// (the forwarded port) and returns the config directory. NTP is off: slirp
// would carry the queries off this machine (the VM's clock is the host's).
func vmConfig(t *testing.T, name string) string {
	return genConfig(t, name, "https://10.0.2.15:6443",
		"--config-patch", `{"machine":{"certSANs":["127.0.0.1"],"network":{"hostname":"`+name+`"},"time":{"disabled":true}}}`)
}

// TestBootPXE is boot path (a): qemu's iPXE ROM loads agent.ipxe, the kernel
// and the initramfs over slirp's TFTP from _out/pxe (boot.ipxe adds the 413
// MB of component images, minutes over slirp's TFTP under TCG; the images
// boot with the disk and the VM clusters); machined as PID 1 takes
// a DHCP lease and serves maintenance mode; the console's apply-config line
// is used as printed; then mTLS, the leased address, bootstrap, a healthy
// etcd, and a clean power-off.
func TestBootPXE(t *testing.T) {
	out := outDir(t)
	v := bootVM(t, "tftp="+filepath.Join(out, "pxe")+",bootfile=agent.ipxe", "-boot", "n", "-no-reboot")
	m := v.waitConsole(applyLineRE, 0, bootTimeout)
	dir := vmConfig(t, "pxe1")
	nc := filepath.Join(dir, "nodeconfig")
	mustNodectl(t, "apply-config", "--insecure", "-n", v.node(), "--cert-fingerprint", m[2], "--file", filepath.Join(dir, "controlplane.yaml"))

	r := mustNodectl(t, "--nodeconfig", nc, "-n", v.node(), "get", "addresses")
	if !regexp.MustCompile(`eth0\s+10\.0\.2\.15/24\s+dhcp`).MatchString(r.stdout) {
		t.Fatalf("get addresses shows no DHCP lease of 10.0.2.15 on eth0:\n%s", r.stdout)
	}
	if r := mustNodectl(t, "--nodeconfig", nc, "-n", v.node(), "get", "leases"); !strings.Contains(r.stdout, "10.0.2.2") {
		t.Errorf("get leases does not name slirp's DHCP server 10.0.2.2:\n%s", r.stdout)
	}
	bootstrapAndWaitEtcd(t, nc, v.node(), "pxe1")
	mustNodectl(t, "--nodeconfig", nc, "-n", v.node(), "etcd", "status")
	if !strings.Contains(v.Console(), "init: root filesystem read-only") {
		t.Errorf("the console does not show the root filesystem remounted read-only")
	}
	r = mustNodectl(t, "--nodeconfig", nc, "-n", v.node(), "dmesg")
	for _, want := range []string{"] Run /init as init process", "] init: kernel modules: ", "] machined: "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("nodectl dmesg lacks %q", want)
		}
	}

	mustNodectl(t, "--nodeconfig", nc, "-n", v.node(), "shutdown")
	v.waitExit(2 * time.Minute)
	v.checkCleanEnd("power off", "init: unmounted /system")
}

// ovmf returns the qemu arguments of UEFI firmware (OVMF, with a fresh copy
// of its variable store).
func ovmf(t *testing.T) []string {
	t.Helper()
	vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	if b, err := exec.Command("cp", "/usr/share/OVMF/OVMF_VARS_4M.fd", vars).CombinedOutput(); err != nil {
		t.Fatalf("OVMF (hack/install-deps.sh qemu): %v: %s", err, b)
	}
	return []string{"-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
		"-drive", "if=pflash,format=raw,file=" + vars}
}

// TestBootISO is boot path (b): the live ISO boots with SeaBIOS (El Torito)
// and with OVMF (UEFI) and serves maintenance mode, which takes a config
// (dry run here).
func TestBootISO(t *testing.T) {
	out := outDir(t)
	for _, fw := range []string{"bios", "uefi"} {
		t.Run(fw, func(t *testing.T) {
			// GRUB reads the 490 MB from the CD on one vCPU: the two
			// firmwares boot side by side on the two cores.
			t.Parallel()
			args := []string{"-cdrom", filepath.Join(out, "ballast.iso"), "-boot", "d", "-no-reboot"}
			if fw == "uefi" {
				args = append(ovmf(t), args...)
			}
			v := bootVM(t, "", args...)
			m := v.waitConsole(applyLineRE, 0, bootTimeout)
			dir := vmConfig(t, "iso1")
			r := mustNodectl(t, "apply-config", "--insecure", "--dry-run", "-n", v.node(), "--cert-fingerprint", m[2], "--file", filepath.Join(dir, "controlplane.yaml"))
			if !strings.Contains(r.stdout+r.stderr, "dry run") {
				t.Fatalf("apply-config --dry-run in maintenance mode: %s", r)
			}
			if !strings.Contains(v.Console(), "init: STATE: no partition named STATE, kept in RAM") {
				t.Errorf("a live ISO should keep STATE in RAM")
			}
			// The ISO boots a Kubernetes node: the component images came
			// with it and the root left the initramfs.
			if !regexp.MustCompile(`init: root filesystem moved off the initramfs to a tmpfs \(6\d\d MB\)`).MatchString(v.Console()) {
				t.Errorf("the ISO's root did not move off the initramfs with the component images (6xx MB)")
			}
		})
	}
}

// TestBootCloudDiskBIOS boots the cloud disk with SeaBIOS (GRUB's boot.img
// and core.img written by hand) on a 6 GiB volume: EPHEMERAL grows to the end
// of the volume, the disk's STATE is mounted and, without a seed volume, the
// node serves maintenance mode.
func TestBootCloudDiskBIOS(t *testing.T) {
	out := outDir(t)
	disk := filepath.Join(t.TempDir(), "disk.qcow2")
	if b, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Join(out, "disk.qcow2"), disk, "6G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, b)
	}
	v := bootVM(t, "", "-drive", "file="+disk+",if=virtio,format=qcow2", "-no-reboot")
	// 6 GiB - 1702 MiB of fixed partitions - 1 MiB for the backup GPT.
	v.waitConsole(regexp.MustCompile(`init: EPHEMERAL: partition /dev/vda6 grown to 4441 MiB \(the end of /dev/vda\)`), 0, bootTimeout)
	v.waitConsole(regexp.MustCompile(`init: EPHEMERAL: filesystem grown to fill /dev/vda6`), 0, time.Minute)
	v.waitConsole(regexp.MustCompile(`init: STATE: /dev/vda5 mounted on /system/state`), 0, bootTimeout)
	v.waitConsole(regexp.MustCompile(`boot config: staying in maintenance mode.*no volume with that label`), 0, time.Minute)
	v.waitConsole(applyLineRE, 0, time.Minute)
}

// TestBootCloudDisk is boot path (c) and (e): the GPT cloud disk (qcow2,
// UEFI firmware) with a nocloud seed volume labelled cidata is configured
// without any API call; `nodectl reboot` brings it back configured from
// STATE; `nodectl shutdown` ends it cleanly with the disks unmounted.
func TestBootCloudDisk(t *testing.T) {
	out := outDir(t)
	tmp := t.TempDir()
	disk := filepath.Join(tmp, "disk.qcow2")
	if b, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Join(out, "disk.qcow2"), disk).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, b)
	}
	dir := vmConfig(t, "disk1")
	seed := filepath.Join(tmp, "seed")
	if err := os.MkdirAll(seed, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "controlplane.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"user-data": cfg, "meta-data": []byte("instance-id: disk1\n")} {
		if err := os.WriteFile(filepath.Join(seed, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	iso := filepath.Join(tmp, "seed.iso")
	if b, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-V", "cidata", "-J", "-r", "-o", iso, seed).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v: %s", err, b)
	}
	v := bootVM(t, "", append(ovmf(t),
		"-drive", "file="+disk+",if=virtio,format=qcow2",
		"-drive", "file="+iso+",if=virtio,format=raw,readonly=on")...)
	v.waitConsole(regexp.MustCompile(`init: STATE: /dev/vda5 mounted on /system/state`), 0, bootTimeout)
	v.waitConsole(regexp.MustCompile(`machine config applied; left maintenance mode`), 0, bootTimeout)
	nc := filepath.Join(dir, "nodeconfig")
	waitFor(t, "the API with mTLS", time.Minute, func() error {
		r, err := runNodectl(nc, "-n", v.node(), "get", "addresses")
		if err == nil && (r.code != 0 || !strings.Contains(r.stdout, "10.0.2.15/24")) {
			err = errors.New(r.String())
		}
		return err
	})

	bootstrapAndWaitEtcd(t, nc, v.node(), "disk1")

	mustNodectl(t, "--nodeconfig", nc, "-n", v.node(), "reboot")
	v.waitConsole(regexp.MustCompile(`init: reboot now`), 0, 2*time.Minute)
	v.checkCleanEnd("reboot", "init: unmounted /system/state", "init: unmounted /system/var")
	v.waitConsole(regexp.MustCompile(`msg="machine config loaded" type=controlplane`), 0, bootTimeout)
	// etcd's data is on EPHEMERAL: the member comes back, at the address
	// DHCP gives after the config was read from STATE.
	waitEtcdMember(t, nc, v.node(), "disk1")

	mustNodectl(t, "--nodeconfig", nc, "-n", v.node(), "shutdown")
	v.waitExit(2 * time.Minute)
	v.checkCleanEnd("power off", "init: unmounted /system/state")
}

// TestBootConfigURL boots the kernel and initramfs directly with
// ballast.config pointing at a server on the host (slirp's 10.0.2.2): a 404
// and then garbage leave the node in maintenance mode with the reason on the
// console; the valid config that follows configures it.
func TestBootConfigURL(t *testing.T) {
	out := outDir(t)
	dir := vmConfig(t, "url1")
	cfg, err := os.ReadFile(filepath.Join(dir, "controlplane.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch hits.Add(1) {
		case 1:
			http.NotFound(w, r)
		case 2:
			w.Write([]byte("machine: [this is not a config\n"))
		default:
			w.Write(cfg)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	url := fmt.Sprintf("http://10.0.2.2:%d/controlplane.yaml", ln.Addr().(*net.TCPAddr).Port)

	v := bootVM(t, "", "-kernel", filepath.Join(out, "vmlinuz"), "-initrd", filepath.Join(out, "initramfs.xz"),
		"-append", "console=ttyS0,115200 panic=10 ballast.config="+url, "-no-reboot")
	v.waitConsole(regexp.MustCompile(`boot config: staying in maintenance mode.*404 Not Found`), 0, bootTimeout)
	v.waitConsole(regexp.MustCompile(`boot config: staying in maintenance mode.*is invalid`), 0, time.Minute)
	v.waitConsole(regexp.MustCompile(`machine config applied; left maintenance mode`), 0, time.Minute)
	nc := filepath.Join(dir, "nodeconfig")
	waitFor(t, "the API with mTLS", time.Minute, func() error {
		r, err := runNodectl(nc, "-n", v.node(), "version")
		if err == nil && r.code != 0 {
			err = errors.New(r.String())
		}
		return err
	})
}

// TestClusterQEMU is the qemu provisioner without Kubernetes: `nodectl
// cluster create --provisioner qemu --no-kubernetes` boots 3 control planes
// as VMs on a tap bridge, leases them their addresses with dnsmasq, applies
// the configs, bootstraps and waits for health (etcd quorum, the VIP); stock
// etcdctl sees the three members; a static address added live to cp3 moves
// its etcd member there; `cluster destroy` stops every VM and dnsmasq.
// (TestClusterQEMUKubernetes has the worker.)
func TestClusterQEMU(t *testing.T) {
	out := outDir(t)
	c := newLocalCluster(t, "e2e-qemu", "10.88.0.0/24")
	c.create("--provisioner", "qemu", "--artifacts", out, "--workers", "0")
	c.health()
	if members := c.memberList("https://10.88.0.2:2379"); len(members) != 3 {
		t.Fatalf("etcdctl member list: %d members, want 3: %+v", len(members), members)
	}
	r := c.must("-n", "10.88.0.4", "get", "addresses")
	if !regexp.MustCompile(`eth0\s+10\.88\.0\.4/24\s+dhcp`).MatchString(r.stdout) {
		t.Fatalf("cp3 has no DHCP lease from dnsmasq:\n%s", r.stdout)
	}
	if r := c.must("get", "vip"); !strings.Contains(r.stdout, "10.88.0.254") {
		t.Fatalf("get vip:\n%s", r.stdout)
	}

	// An address that changes while etcd runs reaches etcd: cp3 gets a
	// static address live (its advertise address, ahead of the lease); its
	// member starts again there, its peer URL updated through the others,
	// and the cluster stays whole.
	c.must("-n", "10.88.0.4", "apply-config", "--mode", "no-reboot", "--file", filepath.Join(c.root, c.name, "controlplane.yaml"),
		"--config-patch", `{"machine":{"time":{"disabled":true},"kubelet":{"nodeLabels":{"topology.kubernetes.io/zone":"zone-c"}},`+
			`"network":{"hostname":"e2e-qemu-cp3","interfaces":[{"interface":"eth0","dhcp":true,"addresses":["10.88.0.14/24"],"vip":{"ip":"10.88.0.254"}}]}}}`)
	waitFor(t, "cp3's etcd member at 10.88.0.14", 3*time.Minute, func() error {
		out, err := c.etcdctl("https://10.88.0.2:2379", "member", "list")
		if err != nil || !strings.Contains(out, "e2e-qemu-cp3, https://10.88.0.14:2380, https://10.88.0.14:2379, false") {
			return fmt.Errorf("member list: %v\n%s", err, out)
		}
		out, err = c.etcdctl("https://10.88.0.14:2379,https://10.88.0.2:2379,https://10.88.0.3:2379", "endpoint", "health")
		if err != nil || strings.Count(out, "is healthy") != 3 {
			return fmt.Errorf("endpoint health: %v\n%s", err, out)
		}
		return nil
	})
	if r := c.must("-n", "10.88.0.4", "logs", "address"); !strings.Contains(r.stdout, "changed from 10.88.0.4 to 10.88.0.14") {
		t.Fatalf("cp3's address service did not log the change:\n%s", r.stdout)
	}
	// Healthy with cp3 at its new address (its API certificate names it too).
	c.health("--control-plane-nodes", "10.88.0.2,10.88.0.3,10.88.0.14")

	console, err := os.ReadFile(filepath.Join(c.root, c.name, "nodes", "cp1", "console.log"))
	if err != nil || !strings.Contains(string(console), "init: ballast init starting") {
		t.Fatalf("cp1's console log lacks init's start (%v)", err)
	}

	c.destroy()
	if b, _ := exec.Command("pgrep", "-f", c.root).Output(); len(b) > 0 {
		t.Fatalf("processes left after destroy: %s", b)
	}
	if _, err := os.Stat(filepath.Join(c.root, c.name)); !os.IsNotExist(err) {
		t.Fatalf("cluster directory left after destroy: %v", err)
	}
}

// bootstrapAndWaitEtcd bootstraps etcd on the VM and waits for its member.
func bootstrapAndWaitEtcd(t *testing.T, nc, node, name string) {
	t.Helper()
	waitFor(t, "bootstrap", time.Minute, func() error {
		r, err := runNodectl(nc, "-n", node, "bootstrap")
		if err == nil && r.code != 0 {
			err = errors.New(r.String())
		}
		return err
	})
	waitEtcdMember(t, nc, node, name)
}

// waitEtcdMember waits until the VM's etcd lists itself started and voting
// at slirp's guest address.
func waitEtcdMember(t *testing.T, nc, node, name string) {
	t.Helper()
	want := regexp.MustCompile(name + `\s+https://10\.0\.2\.15:2380\s+https://10\.0\.2\.15:2379\s+false\s+true`)
	waitFor(t, "a started etcd member at 10.0.2.15", 2*time.Minute, func() error {
		r, err := runNodectl(nc, "-n", node, "etcd", "members")
		if err != nil {
			return err
		}
		if r.code != 0 || !want.MatchString(r.stdout) {
			return fmt.Errorf("etcd members: %s", r)
		}
		return nil
	})
}

// TestClusterQEMUKubernetes boots a control plane and a worker as VMs with
// the component images (images.cpio after the initramfs): `cluster create`
// returns once both nodes are Ready and CoreDNS is available; a pod runs on
// the worker VM, its logs and exec answer through the worker's kubelet, it
// resolves kubernetes.default through CoreDNS on the control plane and
// reaches the apiserver's Service address.
func TestClusterQEMUKubernetes(t *testing.T) {
	out := outDir(t)
	if _, err := os.Stat(filepath.Join(out, "images.cpio")); err != nil {
		t.Fatalf("OS artifact missing (make images builds it): %v", err)
	}
	c := newLocalCluster(t, "e2e-qk", "10.89.0.0/24")
	// One control plane: no VIP. Under TCG, with both VMs busy, its lease
	// renewals (1.4 s) missed their deadline for minutes and the VIP
	// flapped; one CI run timed out waiting for the cluster.
	c.createKubernetes("--provisioner", "qemu", "--artifacts", out, "--controlplanes", "1", "--workers", "1", "--zones", "0", "--vip=false", "--wait-timeout", "20m")
	kc := filepath.Join(c.root, "kubeconfig")
	c.must("kubeconfig", kc)
	k := kubectl{t: t, kubeconfig: kc}
	nodes := k.must("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
	if nodes != "e2e-qk-cp1=True e2e-qk-w1=True" {
		t.Fatalf("nodes: %q, want both Ready", nodes)
	}
	r := c.must("-n", "10.89.0.3", "get", "addresses")
	if !regexp.MustCompile(`eth0\s+10\.89\.0\.3/24\s+dhcp`).MatchString(r.stdout) {
		t.Fatalf("the worker VM has no DHCP lease from dnsmasq:\n%s", r.stdout)
	}
	k.must("run", "vmpod", "--image", busybox, "--image-pull-policy=IfNotPresent", "--restart=Never",
		"--overrides", `{"spec":{"nodeName":"e2e-qk-w1"}}`, "--", "sh", "-c", "echo hello from the VM; sleep 3600")
	k.must("wait", "--for=condition=Ready", "pod/vmpod", "--timeout=180s")
	if logs := k.must("logs", "vmpod"); logs != "hello from the VM" {
		t.Fatalf("kubectl logs: %q", logs)
	}
	if got := k.must("exec", "vmpod", "--", "cat", "/proc/sys/kernel/hostname"); got != "vmpod" {
		t.Fatalf("kubectl exec: hostname %q", got)
	}
	// CoreDNS runs on the control plane: a name resolved from the worker's
	// pod crosses the pod network between the VMs.
	waitFor(t, "kubernetes.default resolved from the worker's pod", time.Minute, func() error {
		out, err := k.run("exec", "vmpod", "--", "nslookup", "kubernetes.default.svc.cluster.local")
		if err == nil && !strings.Contains(out, "10.96.0.1") {
			err = fmt.Errorf("nslookup: %s", out)
		}
		return err
	})
	svc := k.must("get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}")
	waitFor(t, "the apiserver's Service from the worker's pod", time.Minute, func() error {
		_, err := k.run("exec", "vmpod", "--", "sh", "-c", "nc -w 3 "+svc+" 443 </dev/null")
		return err
	})
	c.destroy()
	if b, _ := exec.Command("pgrep", "-f", c.root).Output(); len(b) > 0 {
		t.Fatalf("processes left after destroy: %s", b)
	}
}
