package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ballast-os/ballast/hack/netnstest"
	"github.com/ballast-os/ballast/hack/probe"
	"github.com/ballast-os/ballast/pkg/images"
)

// rolloutResult is one `nodectl cluster upgrade` of a 3 CP + 1 W cluster.
type rolloutResult struct {
	total    time.Duration
	perNode  []string // "host: duration", in the rollout's order
	writes   int      // ConfigMaps acknowledged through the VIP
	failed   int
	lost     int
	longest  time.Duration // between two acknowledged writes
	interval time.Duration
	// The Service of two web pods, probed over HTTP from the worker.
	svcOK, svcFailed int
	svcLongest       time.Duration
}

// webManifest is two web pods behind a Service with a disruption budget.
const webManifest = "hack/e2e/testdata/web-pdb.yaml"

var nodeDoneRE = regexp.MustCompile(`(\S+) \(\S+\)\s+done\s+on \S+ after (\S+)`)

// measureRollout creates a Kubernetes cluster of three control planes and
// a worker and rolls a second build over it with `nodectl cluster upgrade`
// while a client creates a ConfigMap through the VIP every 100 ms.
func measureRollout() (rolloutResult, error) {
	r := rolloutResult{interval: 100 * time.Millisecond}
	root, err := os.MkdirTemp("", "ballast-bench-rollout-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(root)
	env := []string{"NODECONFIG=" + filepath.Join(root, "nodeconfig")}
	args := []string{"--name", "benchroll", "--state", root}
	defer nodectl(env, append([]string{"cluster", "destroy"}, args...)...)
	if _, err := nodectl(env, append([]string{"cluster", "create", "--controlplanes", "3", "--workers", "1", "--cidr", "10.93.0.0/24"}, args...)...); err != nil {
		return r, err
	}
	out, err := nodectl(env, append([]string{"cluster", "show", "-o", "json"}, args...)...)
	if err != nil {
		return r, err
	}
	var show struct {
		Nodes []struct{ Role, Address, Netns string } `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &show); err != nil {
		return r, fmt.Errorf("cluster show: %w", err)
	}
	var cps, workers []string
	var workerNetns string
	for _, n := range show.Nodes {
		if n.Role == "controlplane" {
			cps = append(cps, n.Address)
		} else {
			workers = append(workers, n.Address)
			workerNetns = n.Netns
		}
	}
	kc := filepath.Join(root, "kubeconfig")
	if _, err := nodectl(env, "kubeconfig", kc); err != nil {
		return r, err
	}

	agent := filepath.Join(root, "machined-next")
	later := time.Now().Add(time.Hour)
	if err := buildAgent(agent, "v0.0.0-bench-roll", later); err != nil {
		return r, err
	}
	next := filepath.Join(root, "next")
	if err := benchBundle(next, agent, "v0.0.0-bench-roll", later); err != nil {
		return r, err
	}

	// Two web pods behind a Service (a disruption budget allowing one
	// down), probed from the worker's namespace.
	k := func(a ...string) (string, error) {
		out, err := exec.Command("kubectl", append([]string{"--kubeconfig", kc}, a...)...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(a, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	web, err := os.ReadFile(webManifest)
	if err != nil {
		return r, err
	}
	wf := filepath.Join(root, "web.yaml")
	if err := os.WriteFile(wf, []byte(strings.ReplaceAll(string(web), "BUSYBOX", images.Ref(images.Busybox, images.BusyboxVersion))), 0o600); err != nil {
		return r, err
	}
	if _, err := k("apply", "-f", wf); err != nil {
		return r, err
	}
	if _, err := k("rollout", "status", "deployment/web", "--timeout=120s"); err != nil {
		return r, err
	}
	svc, err := k("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		return r, err
	}
	svcProbe := probe.StartGap(r.interval, func(int) error {
		status, err := netnstest.HTTPGetIn(workerNetns, svc+":80", time.Second)
		if err == nil && !strings.Contains(status, " 200 ") {
			err = fmt.Errorf("status %q", status)
		}
		return err
	})

	w, err := probe.StartConfigMaps(kc, "bench", r.interval)
	if err != nil {
		return r, err
	}
	time.Sleep(2 * time.Second)
	start := time.Now()
	out, err = nodectl(env, "cluster", "upgrade", "--bundle", next, "--control-plane-nodes", strings.Join(cps, ","), "--worker-nodes", strings.Join(workers, ","))
	r.total = time.Since(start)
	time.Sleep(2 * time.Second)
	w.Stop()
	svcProbe.Stop()
	if err != nil {
		return r, err
	}
	r.svcOK, r.svcFailed, r.svcLongest = svcProbe.Result()
	for _, m := range nodeDoneRE.FindAllStringSubmatch(out, -1) {
		r.perNode = append(r.perNode, m[1]+": "+m[2])
	}
	r.writes, r.failed, r.longest = w.Result()
	lost, err := w.Lost(context.Background())
	if err != nil {
		return r, err
	}
	r.lost = len(lost)
	fmt.Printf("rollout 3 CP + 1 W: %s (%s); ConfigMaps %d acknowledged, %d failed, %d lost, longest gap %s; Service %d answers, %d failed, longest gap %s\n",
		r.total.Round(100*time.Millisecond), strings.Join(r.perNode, ", "), r.writes, r.failed, r.lost, r.longest.Round(10*time.Millisecond),
		r.svcOK, r.svcFailed, r.svcLongest.Round(10*time.Millisecond))
	return r, nil
}

func renderRollout(r rolloutResult) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s `nodectl cluster upgrade` of a netns Kubernetes cluster of 3 control planes and 1 worker to a second build (container mode: a new agent, the same images), while a client creates a ConfigMap through the VIP every %s and the worker asks a Service of two web pods for its page. Each node: health and etcd catch-up checked, leadership moved, cordon and drain, upgrade through its A/B slot and health gate, uncordon, cluster health. One round.\n\n", stamp(), r.interval)
	b.WriteString("| figure | value |\n| --- | --: |\n")
	fmt.Fprintf(&b, "| rollout, command to done | %s |\n", r.total.Round(100*time.Millisecond))
	fmt.Fprintf(&b, "| per node, drain to done, in order | %s |\n", strings.Join(r.perNode, ", "))
	fmt.Fprintf(&b, "| ConfigMaps acknowledged / failed / lost | %d / %d / %d |\n", r.writes, r.failed, r.lost)
	fmt.Fprintf(&b, "| longest gap between acknowledged writes | %s |\n", r.longest.Round(10*time.Millisecond))
	fmt.Fprintf(&b, "| Service of 2 web pods (PDB minAvailable 1), HTTP from the worker every %s: answers / failed | %d / %d |\n", r.interval, r.svcOK, r.svcFailed)
	fmt.Fprintf(&b, "| longest gap between Service answers | %s |\n", r.svcLongest.Round(10*time.Millisecond))
	b.WriteString("\nTargets (issue 19): the whole rollout ≤ 5 min, the longest write gap ≤ 2 s, 0 acknowledged writes lost. For comparison: Talos upgrades one node per `talosctl upgrade` call (its documentation publishes no cluster figure); k3s's system-upgrade-controller runs plans with `concurrency` and drains, with no published timing either.\n")
	return b.String()
}
