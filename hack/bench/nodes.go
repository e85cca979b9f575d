package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ballast-os/ballast/pkg/cluster"
	"github.com/ballast-os/ballast/pkg/images"
)

// nodesResult holds the measurements of the nodes section.
type nodesResult struct {
	creates   []time.Duration // cluster create 3 CP + 2 W → every node Ready, CoreDNS available
	podStart  []time.Duration // create → Running, per pod
	failover  time.Duration   // worker power loss → its pods Running on the other worker
	notReady  time.Duration   // worker power loss → NotReady
	workerRSS []nodeRSS
}

var workerRSSOrder = []string{"machined", "containerd", "kubelet"}

const benchPods = 30

// spreadManifest is the Deployment the worker-failure measurement and the
// e2e test move off a powered-off worker.
const spreadManifest = "hack/e2e/testdata/spread.yaml"

// measureNodes times `cluster create` of 3 control planes and 2 workers
// until every node is Ready and CoreDNS available; on the last cluster it
// measures pod start latency for 30 pods, reads the workers' RSS, and
// powers a worker off to time its pods' move to the other worker.
func measureNodes() (nodesResult, error) {
	var r nodesResult
	rounds := 2
	if *quick {
		rounds = 1
	}
	for i := range rounds {
		if err := nodesRound(&r, i == rounds-1); err != nil {
			return r, err
		}
	}
	return r, nil
}

func nodesRound(r *nodesResult, full bool) error {
	root, err := os.MkdirTemp("", "ballast-bench-nodes-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	env := []string{"NODECONFIG=" + filepath.Join(root, "nodeconfig")}
	args := []string{"--name", "benchwl", "--state", root}
	defer nodectl(env, append([]string{"cluster", "destroy"}, args...)...)
	start := time.Now()
	if _, err := nodectl(env, append([]string{"cluster", "create", "--controlplanes", "3", "--workers", "2", "--cidr", "10.91.0.0/24",
		"--config-patch-control-plane", `{"cluster":{"controllerManager":{"extraArgs":{"node-monitor-grace-period":"20s"}}}}`}, args...)...); err != nil {
		return err
	}
	// create returns once health is green: every node (its state lists
	// all five) Ready and CoreDNS available.
	took := time.Since(start)
	r.creates = append(r.creates, took)
	fmt.Printf("3 CP + 2 W: every node Ready, CoreDNS available after %s\n", took.Round(10*time.Millisecond))
	if !full {
		return nil
	}
	kc := filepath.Join(root, "kubeconfig")
	if _, err := nodectl(env, "kubeconfig", kc); err != nil {
		return err
	}
	k := func(a ...string) (string, error) {
		out, err := exec.Command("kubectl", append([]string{"--kubeconfig", kc}, a...)...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(a, " "), err, out)
		}
		return string(out), nil
	}
	time.Sleep(20 * time.Second) // idle
	for _, w := range []string{"w1", "w2"} {
		r.workerRSS = append(r.workerRSS, nodeAgentsRSS(w, filepath.Join(root, "benchwl", "nodes", w)))
	}
	// Pod start latency: 30 pods created at once, each timed from the
	// moment the create returned to the first poll that sees it Running.
	busybox := images.Ref(images.Busybox, images.BusyboxVersion)
	var manifest strings.Builder
	for i := range benchPods {
		fmt.Fprintf(&manifest, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p%d, labels: {bench: start}}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers: [{name: c, image: %s, imagePullPolicy: IfNotPresent, command: [sleep, \"3600\"]}]\n", i, busybox)
	}
	mf := filepath.Join(root, "pods.yaml")
	if err := os.WriteFile(mf, []byte(manifest.String()), 0o600); err != nil {
		return err
	}
	if _, err := k("apply", "-f", mf); err != nil {
		return err
	}
	created := time.Now()
	running := map[string]time.Duration{}
	if err := waitUntil(3*time.Minute, func() error {
		for name, phase := range podPhases(k, "bench=start") {
			if _, seen := running[name]; !seen && phase == "Running" {
				running[name] = time.Since(created)
			}
		}
		if len(running) < benchPods {
			return fmt.Errorf("%d of %d Running", len(running), benchPods)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, d := range running {
		r.podStart = append(r.podStart, d)
	}
	sort.Slice(r.podStart, func(i, j int) bool { return r.podStart[i] < r.podStart[j] })
	fmt.Printf("pod start p50 %s p99 %s\n", pct(r.podStart, 50), pct(r.podStart, 99))
	if _, err := k("delete", "pods", "-l", "bench=start", "--wait=false"); err != nil {
		return err
	}
	// Worker failure: 4 replicas over both workers, tolerating an
	// unreachable node for 5 s; w1 loses power (link down, every process
	// killed).
	spread, err := os.ReadFile(spreadManifest)
	if err != nil {
		return err
	}
	sf := filepath.Join(root, "spread.yaml")
	if err := os.WriteFile(sf, []byte(strings.ReplaceAll(string(spread), "BUSYBOX", busybox)), 0o600); err != nil {
		return err
	}
	if _, err := k("apply", "-f", sf); err != nil {
		return err
	}
	if _, err := k("rollout", "status", "deployment/spread", "--timeout=120s"); err != nil {
		return err
	}
	st, err := cluster.Load(root, "benchwl")
	if err != nil {
		return err
	}
	var w1 cluster.NodeState
	for _, n := range st.Nodes {
		if n.Name == "w1" {
			w1 = n
		}
	}
	lost := time.Now()
	_ = exec.Command("ip", "link", "set", w1.Veth, "down").Run()
	if out, err := exec.Command("ip", "netns", "pids", w1.Netns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	cluster.KillCgroupProcesses("benchwl-w1")
	err = waitUntil(3*time.Minute, func() error {
		out, err := k("get", "pods", "-l", "app=spread", "-o", "jsonpath={range .items[*]}{.spec.nodeName} {.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}{end}")
		if err != nil {
			return err
		}
		if r.notReady == 0 {
			if nodes, err := k("get", "node", "benchwl-w1", "--no-headers"); err == nil && strings.Contains(nodes, "NotReady") {
				r.notReady = time.Since(lost)
			}
		}
		n := 0
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "benchwl-w2" && f[1] == "Running" {
				n++
			}
		}
		if n != 4 {
			return fmt.Errorf("%d of 4 Running on w2", n)
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.failover = time.Since(lost)
	fmt.Printf("worker power loss: NotReady after %s, pods Running on the other worker after %s\n", r.notReady.Round(time.Second), r.failover.Round(time.Second))
	return nil
}

func podPhases(k func(...string) (string, error), selector string) map[string]string {
	out, err := k("get", "pods", "-l", selector, "-o", "json")
	if err != nil {
		return nil
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Status struct {
				Phase string `json:"phase"`
			} `json:"status"`
		} `json:"items"`
	}
	if json.Unmarshal([]byte(out), &list) != nil {
		return nil
	}
	phases := map[string]string{}
	for _, p := range list.Items {
		phases[p.Metadata.Name] = p.Status.Phase
	}
	return phases
}

func waitUntil(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s: %w", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)].Round(10 * time.Millisecond)
}

func renderNodes(r nodesResult) string {
	var b strings.Builder
	b.WriteString(stamp() + "\n\n")
	b.WriteString("3 control planes + 2 workers, every node with its own containerd and kubelet, kube-proxy (nftables) and CoreDNS, the host-gw pod network; warm (images built).\n\n")
	b.WriteString("| what | Ballast | published elsewhere |\n| --- | --: | --- |\n")
	fmt.Fprintf(&b, "| `cluster create` → every node Ready, CoreDNS available (rounds) | %s | kind publishes no node startup figure |\n", durations(r.creates))
	if len(r.podStart) > 0 {
		fmt.Fprintf(&b, "| pod start, create → Running, %d pods at once (200 ms polls): p50 / p99 | %s / %s | — |\n", len(r.podStart), pct(r.podStart, 50), pct(r.podStart, 99))
	}
	if r.failover > 0 {
		fmt.Fprintf(&b, "| worker power loss → NotReady (controller-manager `node-monitor-grace-period: 20s`) | %s | default grace period 50 s |\n", r.notReady.Round(time.Second))
		fmt.Fprintf(&b, "| worker power loss → its pods Running on the other worker (pods tolerate unreachable 5 s) | %s | default toleration 300 s |\n", r.failover.Round(time.Second))
	}
	if len(r.workerRSS) > 0 {
		b.WriteString("\n### Resident memory per worker, idle 20 s after create (MiB)\n\n| node |")
		for _, p := range workerRSSOrder {
			b.WriteString(" " + p + " |")
		}
		b.WriteString(" total |\n| --- |" + strings.Repeat(" --: |", len(workerRSSOrder)+1) + "\n")
		for _, n := range r.workerRSS {
			b.WriteString("| " + n.node + " |")
			var total int64
			for _, p := range workerRSSOrder {
				total += n.procs[p]
				fmt.Fprintf(&b, " %.0f |", float64(n.procs[p])/1024)
			}
			fmt.Fprintf(&b, " %.0f |\n", float64(total)/1024)
		}
		b.WriteString("\nFor comparison, k3s publishes 275 MB as the minimum RAM of a K3s agent (kubelet and k3s agent, K3s v1.26.5 on an Intel 8375C; docs.k3s.io/reference/resource-profiling) — measured differently (95th percentile of a node with workloads), so a rough scale only.\n")
	}
	return b.String()
}
