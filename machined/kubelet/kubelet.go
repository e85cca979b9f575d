// Package kubelet is the controller of a node's kubelet: at every start it
// writes the kubelet's config, CA and resolv.conf from the machine config,
// prepares its cgroup root, has its client certificate made current, and
// runs it as a process of the node; a config change to its flags or config
// (machine.kubelet.extraArgs, live) restarts it.
package kubelet

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
	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/config"
)

// Service is the kubelet's name as a supervised service.
const Service = "kubelet"

// cgroupV1Controllers are the cgroup v1 hierarchies the kubelet's cgroup
// root must exist in (cgroupfs driver).
var cgroupV1Controllers = []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd", "hugetlb", "net_cls", "net_prio", "perf_event"}

// CgroupV1Host reports whether /sys/fs/cgroup is a cgroup v1 (or hybrid)
// layout rather than the unified cgroup2 hierarchy.
func CgroupV1Host() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err != nil
}

// Inputs are what the kubelet's files and flags are made of, read at each
// start.
type Inputs struct {
	// Config returns the machine config and a channel closed when it
	// changes.
	Config func() (*config.Config, <-chan struct{})
	// Node is what the kubelet's files depend on besides the config.
	Node func(*config.Config) k8s.KubeletNode
	// Resolvers are the node's DNS servers (pods with dnsPolicy Default).
	Resolvers func(*config.Config) []string
	Paths     k8s.KubeletPaths
}

// Runner runs the kubelet as a supervised process (supervisor.Runner).
type Runner struct {
	Inputs Inputs
	// Binary finds the kubelet binary of the config's kubelet release.
	Binary func(*config.Config) (string, error)
	// ClientCert makes the kubelet's client certificate current for kn
	// (signed by this control plane, or asked of one by a worker).
	ClientCert func(ctx context.Context, cfg *config.Config, kn k8s.KubeletNode, out io.Writer) error
	// Restart restarts the kubelet's service (a changed config).
	Restart func(context.Context) error
	// LogTail is the kubelet's last log lines (a failed start's reason).
	LogTail func(n int) []string
}

func (r *Runner) String() string { return "process(kubelet)" }

// Run prepares and runs the kubelet until ctx ends or it exits.
func (r *Runner) Run(ctx context.Context, out io.Writer, started func()) error {
	in := r.Inputs
	cfg, _ := in.Config()
	if cfg == nil {
		return errors.New("no machine config")
	}
	bin, err := r.Binary(cfg)
	if err != nil {
		return err
	}
	kn, p := in.Node(cfg), in.Paths
	if err := writeFiles(cfg, kn, p, in.Resolvers(cfg)); err != nil {
		return err
	}
	if kn.CgroupV1 {
		if err := ensureCgroupV1(kn.CgroupRoot); err != nil {
			return err
		}
	}
	if err := r.ClientCert(ctx, cfg, kn, out); err != nil {
		return err
	}
	args := append([]string{bin}, k8s.KubeletArgs(cfg, kn, p)...)
	// machine.kubelet.extraArgs and the kubelet's release
	// (machine.kubelet.version, cluster.kubernetesVersion) are live: a
	// config that changes them restarts it.
	fp := fingerprint(cfg, kn, p)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		for {
			cur, changed := in.Config()
			if cur != nil && fingerprint(cur, in.Node(cur), p) != fp {
				fmt.Fprintln(out, "kubelet release, flags or config changed: restarting the kubelet")
				go func() { _ = r.Restart(context.WithoutCancel(ctx)) }()
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
	if errors.As(err, &exit) && r.LogTail != nil {
		// The kubelet's own words (e.g. "unknown flag: --foo"), the last
		// lines of its log, say more than an exit status.
		if msg := errorLine(r.LogTail(5)); msg != "" {
			return fmt.Errorf("%w: %s", err, msg)
		}
	}
	return err
}

// fingerprint identifies the kubelet's release, flags and config.
func fingerprint(cfg *config.Config, kn k8s.KubeletNode, p k8s.KubeletPaths) string {
	kc, err := k8s.KubeletConfig(cfg, kn, p)
	if err != nil {
		return err.Error()
	}
	return cfg.KubeletVersion() + "\n" + strings.Join(k8s.KubeletArgs(cfg, kn, p), " ") + "\n" + string(kc)
}

// writeFiles writes the kubelet's config, CA and resolv.conf (the node's resolvers), and creates its directories.
func writeFiles(cfg *config.Config, kn k8s.KubeletNode, p k8s.KubeletPaths, resolvers []string) error {
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
