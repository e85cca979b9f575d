package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ballast-os/ballast/hack/qemuvm"
)

// bootRound is one boot of the OS artifacts in qemu (TCG).
type bootRound struct {
	path        string        // "direct kernel boot" or "PXE"
	kernelInit  time.Duration // kernel start → /init (kernel timestamp)
	initAPI     time.Duration // /init → machine API listening
	initLease   time.Duration // /init → DHCP lease (the apply-config line with the address)
	powerOnAPI  time.Duration // qemu started → machine API listening (wall)
	agentRSSMiB float64       // machined (configured, etcd bootstrapped), from its metrics
}

type bootResult struct {
	rounds []bootRound
	sizes  []artifactSize
}

type artifactSize struct {
	name       string
	mb         float64
	unpackedMB float64 // initramfs only
}

var applyLine = regexp.MustCompile(`nodectl apply-config --insecure -n 10\.0\.2\.15 --cert-fingerprint ([0-9a-f]{64})`)

// artifactsDir is _out next to the binaries.
func artifactsDir() string { return filepath.Dir(filepath.Clean(*binDir)) }

// measureBoot boots the artifacts: kernel + initramfs directly, and PXE
// over slirp's TFTP, timing each step from the console's kernel timestamps;
// the first round applies a config and bootstraps etcd to read machined's
// RSS from its metrics.
func measureBoot() (bootResult, error) {
	var r bootResult
	out := artifactsDir()
	for _, f := range []string{"vmlinuz", "initramfs.xz", "images.cpio", "pxe/agent.ipxe", "ballast.iso", "disk.qcow2", "disk.raw"} {
		st, err := os.Stat(filepath.Join(out, f))
		if err != nil {
			return r, fmt.Errorf("boot: %w (make images)", err)
		}
		if strings.HasSuffix(f, ".ipxe") {
			continue
		}
		a := artifactSize{name: f, mb: float64(st.Size()) / 1e6}
		if f == "initramfs.xz" {
			a.unpackedMB = xzUnpackedMB(filepath.Join(out, f))
		}
		if f == "disk.raw" {
			a.name = "disk.raw (sparse; allocated)"
			a.mb = float64(allocated(st)) / 1e6
		}
		r.sizes = append(r.sizes, a)
	}
	rounds := 3
	if *quick {
		rounds = 1
	}
	for i := range rounds {
		b, err := bootOnce("direct kernel boot", i == 0, "", "-kernel", filepath.Join(out, "vmlinuz"), "-initrd", filepath.Join(out, "initramfs.xz"),
			"-append", "console=ttyS0,115200 panic=10 ballast.kubernetes=false")
		if err != nil {
			return r, err
		}
		r.rounds = append(r.rounds, b)
		b, err = bootOnce("PXE (iPXE, slirp TFTP)", false, "tftp="+filepath.Join(out, "pxe")+",bootfile=agent.ipxe", "-boot", "n")
		if err != nil {
			return r, err
		}
		r.rounds = append(r.rounds, b)
	}
	// A Kubernetes node: the component images as a second initrd (what the
	// ISO, the disk, boot.ipxe and the VM clusters boot); PID 1 moves the
	// root off the initramfs first.
	initrd, err := concat(filepath.Join(out, "initramfs.xz"), filepath.Join(out, "images.cpio"))
	if err != nil {
		return r, err
	}
	defer os.Remove(initrd)
	b, err := bootOnce("direct kernel boot + images.cpio (Kubernetes node)", false, "", "-kernel", filepath.Join(out, "vmlinuz"), "-initrd", initrd,
		"-append", "console=ttyS0,115200 panic=10")
	if err != nil {
		return r, err
	}
	r.rounds = append(r.rounds, b)
	return r, nil
}

// concat writes the files one after the other into a temporary file (qemu
// takes one -initrd; the kernel unpacks concatenated archives in turn).
func concat(files ...string) (string, error) {
	f, err := os.CreateTemp("", "initrd-*")
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, name := range files {
		in, err := os.Open(name)
		if err != nil {
			os.Remove(f.Name())
			return "", err
		}
		_, err = io.Copy(f, in)
		in.Close()
		if err != nil {
			os.Remove(f.Name())
			return "", err
		}
	}
	return f.Name(), f.Close()
}

func bootOnce(path string, rss bool, netdev string, args ...string) (bootRound, error) {
	b := bootRound{path: path}
	v, err := qemuvm.Start(netdev, append(args, "-no-reboot")...)
	if err != nil {
		return b, err
	}
	defer v.Kill()
	if _, err := v.WaitConsole(regexp.MustCompile(`msg="machine API listening"`), 0, 4*time.Minute); err != nil {
		return b, err
	}
	b.powerOnAPI = time.Since(v.Started)
	m, err := v.WaitConsole(applyLine, 0, time.Minute)
	if err != nil {
		return b, err
	}
	c := v.Console()
	start, ok1 := qemuvm.KernelTime(c, "Run /init as init process")
	api, ok2 := qemuvm.KernelTime(c, `msg="machine API listening"`)
	lease, ok3 := qemuvm.KernelTime(c, "--insecure -n 10.0.2.15")
	if !ok1 || !ok2 || !ok3 {
		return b, fmt.Errorf("boot: the console lacks a timestamped /init, API or lease line")
	}
	b.kernelInit, b.initAPI, b.initLease = start, api-start, lease-start
	if rss {
		if b.agentRSSMiB, err = configuredRSS(v, m[1]); err != nil {
			return b, err
		}
	}
	return b, nil
}

// configuredRSS applies a control-plane config through maintenance mode,
// bootstraps etcd and reads process_resident_memory_bytes from machined's
// metrics 20 s later.
func configuredRSS(v *qemuvm.VM, fingerprint string) (float64, error) {
	dir, err := os.MkdirTemp("", "ballast-bench-boot-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	nodectl := filepath.Join(*binDir, "nodectl")
	run := func(args ...string) error {
		cmd := exec.Command(nodectl, args...)
		cmd.Env = append(os.Environ(), "NODECONFIG="+filepath.Join(dir, "nodeconfig"))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nodectl %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("gen", "config", "bench", "https://10.0.2.15:6443", "--output-dir", dir,
		"--config-patch", `{"machine":{"certSANs":["127.0.0.1"],"time":{"disabled":true}}}`); err != nil {
		return 0, err
	}
	if err := run("apply-config", "--insecure", "-n", v.Node(), "--cert-fingerprint", fingerprint, "--file", filepath.Join(dir, "controlplane.yaml")); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := run("-n", v.Node(), "bootstrap")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return 0, err
		}
		time.Sleep(2 * time.Second)
	}
	time.Sleep(20 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", v.MetricsPort), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("machined metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f / (1 << 20), err
		}
	}
	return 0, fmt.Errorf("machined metrics have no process_resident_memory_bytes")
}

// xzUnpackedMB is the uncompressed size xz records.
func xzUnpackedMB(path string) float64 {
	out, err := exec.Command("xz", "--robot", "-l", path).Output()
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) > 4 && f[0] == "totals" {
			n, _ := strconv.ParseFloat(f[4], 64)
			return n / 1e6
		}
	}
	return 0
}

func renderBoot(r bootResult) string {
	var b strings.Builder
	b.WriteString(stamp() + "\n\n")
	b.WriteString("qemu with TCG (KVM is not usable here), 2 vCPUs, 3 GiB, virtio NIC on slirp (its DHCP and TFTP). The direct and PXE rounds boot the agent and etcd only (`ballast.kubernetes=false`, `agent.ipxe`); the last row boots a Kubernetes node (initramfs + images.cpio), whose PID 1 first moves / off the initramfs. Times come from the console's kernel timestamps, except power-on → API (wall clock, including firmware and loading). The lease time is the console's apply-config line with the leased address (printed within 0.5 s of the lease).\n\n")
	b.WriteString("| boot path | kernel start → /init | /init → API listening | /init → DHCP lease | power-on → API (wall) | machined RSS, configured + etcd |\n| --- | --: | --: | --: | --: | --: |\n")
	for _, x := range r.rounds {
		rss := "—"
		if x.agentRSSMiB > 0 {
			rss = fmt.Sprintf("%.0f MiB", x.agentRSSMiB)
		}
		fmt.Fprintf(&b, "| %s | %.2f s | %.2f s | %.2f s | %.1f s | %s |\n", x.path, x.kernelInit.Seconds(), x.initAPI.Seconds(), x.initLease.Seconds(), x.powerOnAPI.Seconds(), rss)
	}
	b.WriteString("\nTargets: API ≤ 1 s after /init under TCG; initramfs.xz ≤ 50 MB without the Kubernetes images.\n\n### Artifact sizes\n\n| artifact | size | published elsewhere |\n| --- | --: | --- |\n")
	for _, a := range r.sizes {
		note := "—"
		switch a.name {
		case "initramfs.xz":
			note = "Talos v1.x initramfs-amd64.xz: 55–58 MB"
		case "vmlinuz":
			note = "Debian's kernel package, unmodified"
		}
		size := fmt.Sprintf("%.1f MB", a.mb)
		if a.unpackedMB > 0 {
			size += fmt.Sprintf(" (%.0f MB unpacked)", a.unpackedMB)
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", a.name, size, note)
	}
	b.WriteString("\nThe initramfs carries machined, containerd, its shim, runc and mount/umount (Debian's, with their libraries), the kubelet, four CNI plugins and 274 kernel modules; the Kubernetes component images are images.cpio, a second initrd (uncompressed: their layers are tar), which the ISO and the disk carry too.\n")
	return b.String()
}

// allocated is the bytes a sparse file really takes.
func allocated(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512
	}
	return st.Size()
}
