package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/config"
)

// kubeletService is the node's kubelet.
const kubeletService = "kubelet"

// cgroupV1Controllers are the cgroup v1 hierarchies the kubelet's cgroup
// root must exist in (cgroupfs driver).
var cgroupV1Controllers = []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd", "hugetlb", "net_cls", "net_prio", "perf_event"}

func (n *Node) kubeletPaths() k8s.KubeletPaths { return k8s.NewKubeletPaths(n.store.EphemeralDir()) }

// kubeletNode is what the kubelet's files depend on besides the config.
func (n *Node) kubeletNode(cfg *config.Config) k8s.KubeletNode {
	n.mu.Lock()
	d := n.ctrd
	n.mu.Unlock()
	name := n.nodeName(cfg)
	// In container mode the node's pods live under a cgroup of its own; on
	// metal the machine is the node and the kubelet takes the root.
	cgroupRoot := "/ballast/" + name
	if n.opts.Mode == ModeMetal {
		cgroupRoot = "/"
	}
	return k8s.KubeletNode{
		Name:          name,
		IP:            n.advertiseIP(cfg),
		LocalEndpoint: "https://" + n.lbAddr(),
		CRISocket:     d.Socket(),
		CgroupRoot:    cgroupRoot,
		CgroupV1:      cgroupV1Host(),
	}
}

// cgroupV1Host reports whether /sys/fs/cgroup is a cgroup v1 (or hybrid)
// layout rather than the unified cgroup2 hierarchy.
func cgroupV1Host() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err != nil
}

// kubeletSpec is the kubelet, a process of the node, started once the
// images are imported (the pause image must be there).
func (n *Node) kubeletSpec(cfg *config.Config) supervisor.Spec {
	return supervisor.Spec{
		ID:          kubeletService,
		Description: "kubelet " + cfg.Cluster.KubernetesVersion + " (CRI: the node's containerd)",
		DependsOn:   []string{containerdService, lbService},
		Conditions:  []supervisor.Condition{{Name: "images imported", Wait: n.waitImages}},
		Runner:      &kubeletRunner{n: n},
		Restart:     supervisor.Always,
		Health: &supervisor.HealthCheck{
			Check:    k8s.KubeletProbe().Check,
			Interval: 5 * time.Second,
			Timeout:  3 * time.Second,
			// A hung kubelet (3 failed /healthz in a row) is restarted.
			FailureThreshold: 3,
		},
	}
}

// kubeletRunner writes the kubelet's files and runs it; it builds the
// command at every start, so a restart picks up the current config.
type kubeletRunner struct{ n *Node }

func (r *kubeletRunner) String() string { return "process(kubelet)" }

func (r *kubeletRunner) Run(ctx context.Context, out io.Writer, started func()) error {
	n := r.n
	cfg := n.desired.Current()
	if cfg == nil {
		return errors.New("no machine config")
	}
	bin, err := runner.FindBinary("kubelet", n.opts.KubeletPath, "build it with 'make images' or pass --kubelet-path")
	if err != nil {
		return err
	}
	kn, p := n.kubeletNode(cfg), n.kubeletPaths()
	servers, _ := n.network.Resolvers(cfg.Machine.Network)
	if err := writeKubeletFiles(cfg, kn, p, servers); err != nil {
		return err
	}
	if kn.CgroupV1 {
		if err := ensureCgroupV1(kn.CgroupRoot); err != nil {
			return err
		}
	}
	if err := n.ensureKubeletClient(ctx, cfg, kn, p, out); err != nil {
		return err
	}
	args := append([]string{bin}, k8s.KubeletArgs(cfg, kn, p)...)
	// machine.kubelet.extraArgs is live: a config that changes the
	// kubelet's flags or config restarts it.
	fingerprint := kubeletFingerprint(cfg, kn, p)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		for {
			cur, changed := n.Config()
			if cur != nil && kubeletFingerprint(cur, n.kubeletNode(cur), p) != fingerprint {
				fmt.Fprintln(out, "kubelet flags or config changed: restarting the kubelet")
				go func() { _ = n.sup.Restart(context.WithoutCancel(ctx), kubeletService) }()
				return
			}
			select {
			case <-wctx.Done():
				return
			case <-changed:
			}
		}
	}()
	err = runner.Process(args, runner.ProcessOptions{
		Env:         []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		GracePeriod: 10 * time.Second,
	}).Run(ctx, out, started)
	var exit *runner.ExitError
	if errors.As(err, &exit) {
		// The kubelet's own words (e.g. "unknown flag: --foo"), the last
		// lines of its log, say more than an exit status.
		if buf, lerr := n.sup.Logs(kubeletService); lerr == nil {
			if msg := errorLine(buf.Tail(5)); msg != "" {
				return fmt.Errorf("%w: %s", err, msg)
			}
		}
	}
	return err
}

// kubeletFingerprint identifies the kubelet's flags and config.
func kubeletFingerprint(cfg *config.Config, kn k8s.KubeletNode, p k8s.KubeletPaths) string {
	kc, err := k8s.KubeletConfig(cfg, kn, p)
	if err != nil {
		return err.Error()
	}
	return strings.Join(k8s.KubeletArgs(cfg, kn, p), " ") + "\n" + string(kc)
}

// writeKubeletFiles writes the kubelet's config, CA and resolv.conf (the node's resolvers), and creates its directories.
func writeKubeletFiles(cfg *config.Config, kn k8s.KubeletNode, p k8s.KubeletPaths, resolvers []string) error {
	for _, dir := range []string{p.Dir, p.RootDir, p.PodLogsDir, p.CNIConfDir, p.CNIDataDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("kubelet dir: %w", err)
		}
	}
	kc, err := k8s.KubeletConfig(cfg, kn, p)
	if err != nil {
		return err
	}
	ca, err := k8s.ClusterCACert(cfg)
	if err != nil {
		return err
	}
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{p.Config(), kc, 0o644},
		{p.CA(), ca, 0o644},
		{p.ResolvConf(), resolvConf(resolvers), 0o644},
	}
	for _, f := range files {
		if err := atomicfile.Write(f.path, f.data, f.mode); err != nil {
			return fmt.Errorf("kubelet file: %w", err)
		}
	}
	return nil
}

// resolvConf is the resolv.conf pods with dnsPolicy Default get (and
// CoreDNS forwards to): the node's resolvers (machine.network.nameservers,
// else DHCP's), else the machine's /etc/resolv.conf.
func resolvConf(resolvers []string) []byte {
	if len(resolvers) > 0 {
		var b strings.Builder
		for _, s := range resolvers {
			fmt.Fprintf(&b, "nameserver %s\n", s)
		}
		return []byte(b.String())
	}
	if data, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		return data
	}
	return nil
}

// ensureCgroupV1 creates the kubelet's cgroup root in every cgroup v1
// hierarchy (the cgroupfs driver expects it in all), with cpuset's CPUs and
// memory nodes copied from the parent (a new cpuset starts empty).
func ensureCgroupV1(root string) error {
	for _, c := range cgroupV1Controllers {
		base := filepath.Join("/sys/fs/cgroup", c)
		if _, err := os.Stat(base); err != nil {
			continue
		}
		dir := base
		for _, part := range strings.Split(strings.Trim(root, "/"), "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
				return fmt.Errorf("cgroup %s: %w", dir, err)
			}
			if c == "cpuset" {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					if cur, _ := os.ReadFile(filepath.Join(dir, f)); len(bytes.TrimSpace(cur)) > 0 {
						continue
					}
					v, err := os.ReadFile(filepath.Join(parent, f))
					if err != nil {
						return fmt.Errorf("cgroup %s: %w", parent, err)
					}
					if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
						return fmt.Errorf("cgroup %s/%s: %w", dir, f, err)
					}
				}
			}
		}
	}
	return nil
}

// klogError matches a klog error line ("E1123 15:04:05.000000 …").
var klogError = regexp.MustCompile(`^E\d{4} `)

// errorLine is the last of lines that reads like an error, else the last.
func errorLine(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if s := strings.ToLower(lines[i]); strings.Contains(s, "error") || strings.Contains(s, "failed") || strings.Contains(s, "unknown") || klogError.MatchString(lines[i]) {
			return lines[i]
		}
	}
	if len(lines) > 0 {
		return lines[len(lines)-1]
	}
	return ""
}
