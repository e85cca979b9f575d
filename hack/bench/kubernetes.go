package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ballast-os/ballast/pkg/cluster"
)

var cold = flag.Bool("cold", false, "kubernetes section: also build containerd, Kubernetes and the images from an empty Go build cache first (minutes)")

type k8sResult struct {
	warm  []time.Duration
	cold  time.Duration // 0 when not measured
	build time.Duration
	rss   []nodeRSS
}

type nodeRSS struct {
	node  string
	procs map[string]int64 // name -> KiB
}

var rssOrder = []string{"machined", "launcher", "containerd", "kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// measureKubernetes times `cluster create` of 3 control planes with the
// Kubernetes components until `health` is green (every apiserver ready, the
// endpoint answering through the VIP, both leader leases held), with the
// images built (warm); with -cold, also from an empty build cache. Then it
// reads every process's RSS on the idle cluster.
func measureKubernetes() (k8sResult, error) {
	var r k8sResult
	if *cold {
		gocache, err := os.MkdirTemp("", "ballast-bench-gocache-")
		if err != nil {
			return r, err
		}
		out, err := os.MkdirTemp("", "ballast-bench-out-")
		if err != nil {
			return r, err
		}
		defer os.RemoveAll(gocache)
		defer os.RemoveAll(out)
		start := time.Now()
		cmd := exec.Command("make", "images", "OUT="+out)
		cmd.Env = append(os.Environ(), "GOCACHE="+gocache, "OUT="+out)
		if b, err := cmd.CombinedOutput(); err != nil {
			return r, fmt.Errorf("cold image build: %w\n%s", err, b)
		}
		r.build = time.Since(start)
		fmt.Printf("cold build of containerd, Kubernetes and the images: %s\n", r.build.Round(time.Second))
	}
	rounds := 3
	if *quick {
		rounds = 1
	}
	for i := range rounds {
		res, err := createK8s(i == rounds-1, &r)
		if err != nil {
			return r, err
		}
		r.warm = append(r.warm, res)
		fmt.Printf("3 CP with Kubernetes healthy after %s\n", res.Round(10*time.Millisecond))
	}
	if *cold {
		r.cold = r.build + r.warm[0]
	}
	return r, nil
}

// rssIdle is how long the cluster idles before its memory is read: past
// the start's garbage and the first collections.
const rssIdle = 90 * time.Second

func createK8s(readRSS bool, r *k8sResult) (time.Duration, error) {
	root, err := os.MkdirTemp("", "ballast-bench-k8s-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(root)
	env := []string{"NODECONFIG=" + filepath.Join(root, "nodeconfig")}
	args := []string{"--name", "benchk8s", "--state", root}
	defer nodectl(env, append([]string{"cluster", "destroy"}, args...)...)
	start := time.Now()
	if _, err := nodectl(env, append([]string{"cluster", "create", "--controlplanes", "3", "--workers", "0", "--cidr", "10.90.0.0/24"}, args...)...); err != nil {
		return 0, err
	}
	took := time.Since(start)
	if readRSS {
		time.Sleep(rssIdle) // idle
		for i := 1; i <= 3; i++ {
			addr := fmt.Sprintf("10.90.0.%d", i+1)
			stateDir := filepath.Join(root, "benchk8s", "nodes", fmt.Sprintf("cp%d", i))
			n := nodeAgentsRSS(fmt.Sprintf("cp%d", i), stateDir)
			out, err := nodectl(env, "-n", addr, "containers", "-o", "json")
			if err == nil {
				var res []struct {
					Result struct {
						Containers []struct {
							ID  string `json:"id"`
							Pid int    `json:"pid"`
						} `json:"containers"`
					} `json:"result"`
				}
				if json.Unmarshal([]byte(out), &res) == nil && len(res) == 1 {
					for _, c := range res[0].Result.Containers {
						n.procs[c.ID] = rssKiB(c.Pid)
					}
				}
			}
			r.rss = append(r.rss, n)
		}
	}
	return took, nil
}

// nodeAgentsRSS reads the RSS of a node's machined, containerd and kubelet.
func nodeAgentsRSS(name, stateDir string) nodeRSS {
	n := nodeRSS{node: name, procs: map[string]int64{}}
	if pid, err := pgrep("--state-dir " + stateDir + " "); err == nil {
		// The first match is the launcher; the agent is its child.
		if agent, err := cluster.AgentPID(pid); err == nil {
			n.procs["machined"] = rssKiB(agent)
		}
		n.procs["launcher"] = rssKiB(pid)
	}
	if data, err := os.ReadFile(filepath.Join(stateDir, "var", "run", "containerd", "containerd.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			n.procs["containerd"] = rssKiB(pid)
		}
	}
	if pid, err := pgrep("kubelet .*--root-dir=" + stateDir + "/"); err == nil {
		n.procs["kubelet"] = rssKiB(pid)
	}
	return n
}

func pgrep(pattern string) (int, error) {
	out, err := exec.Command("pgrep", "-f", "--", pattern).Output()
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.Fields(string(out))[0])
}

// rssKiB is a process's resident set size (VmRSS), 0 when unknown.
func rssKiB(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

func renderKubernetes(r k8sResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured on %s, %d CPUs, %s.\n\n", time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.Version())
	b.WriteString("### `nodectl cluster create` (3 control planes) until `nodectl health` is green\n\n")
	b.WriteString("Green means: etcd formed, the VIP held, kube-apiserver ready on every control plane, `/readyz` answered through the VIP with an admin kubeconfig, the kube-scheduler and kube-controller-manager leases held, every node (kubelet) Ready and CoreDNS available.\n\n| | time | target |\n| --- | --: | --: |\n")
	fmt.Fprintf(&b, "| warm (images built), rounds | %s | ≤ 15 s |\n", durations(r.warm))
	if r.cold > 0 {
		fmt.Fprintf(&b, "| cold: containerd, Kubernetes and images built from an empty Go build cache (modules already downloaded), then the cluster | %s (build %s) | — |\n", r.cold.Round(time.Second), r.build.Round(time.Second))
	}
	b.WriteString("\nFor scale: one kube-apiserver alone against an embedded etcd answers `/readyz` in ~2.5 s on this machine.\n")
	if len(r.rss) > 0 {
		fmt.Fprintf(&b, "\n### Resident memory per node, idle %s after create (MiB, VmRSS)\n\n| node |", rssIdle)
		for _, p := range rssOrder {
			b.WriteString(" " + p + " |")
		}
		b.WriteString("\n| --- |" + strings.Repeat(" --: |", len(rssOrder)) + "\n")
		for _, n := range r.rss {
			b.WriteString("| " + n.node + " |")
			for _, p := range rssOrder {
				fmt.Fprintf(&b, " %.0f |", float64(n.procs[p])/1024)
			}
			b.WriteString("\n")
		}
		b.WriteString("\nmachined includes the embedded etcd member and its Kubernetes controllers (target ≤ 80 MiB idle; what it is made of and the GOGC trade-off: [architecture.md](architecture.md#the-kubernetes-client-and-memory)).\n")
	}
	return b.String()
}
