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
	p, err := startProbedCluster("benchroll", "10.93.0.0/24")
	if err != nil {
		return rolloutResult{}, err
	}
	defer p.close()
	agent := filepath.Join(p.root, "machined-next")
	later := time.Now().Add(time.Hour)
	if err := buildAgent(agent, "v0.0.0-bench-roll", later); err != nil {
		return rolloutResult{}, err
	}
	next := filepath.Join(p.root, "next")
	if err := benchBundle(next, agent, "v0.0.0-bench-roll", later); err != nil {
		return rolloutResult{}, err
	}
	r, out, err := p.measure("cluster", "upgrade", "--bundle", next)
	if err != nil {
		return r, err
	}
	for _, m := range nodeDoneRE.FindAllStringSubmatch(out, -1) {
		r.perNode = append(r.perNode, m[1]+": "+m[2])
	}
	fmt.Printf("rollout 3 CP + 1 W: %s (%s); %s\n", r.total.Round(100*time.Millisecond), strings.Join(r.perNode, ", "), r.clients())
	return r, nil
}

// probedCluster is a netns Kubernetes cluster of three control planes and
// a worker running two web pods behind a Service, for measuring what an
// operation costs its clients.
type probedCluster struct {
	root, kc    string
	env, args   []string
	nodesFlags  []string
	workerNetns string
	svc         string // the Service's ClusterIP:80
}

// startProbedCluster creates the cluster (with create's extra flags) and
// its web Deployment.
func startProbedCluster(name, cidr string, create ...string) (*probedCluster, error) {
	root, err := os.MkdirTemp("", "ballast-bench-"+name+"-")
	if err != nil {
		return nil, err
	}
	p := &probedCluster{root: root, kc: filepath.Join(root, "kubeconfig"),
		env: []string{"NODECONFIG=" + filepath.Join(root, "nodeconfig")}, args: []string{"--name", name, "--state", root}}
	ok := false
	defer func() {
		if !ok {
			p.close()
		}
	}()
	if _, err := nodectl(p.env, append(append([]string{"cluster", "create", "--controlplanes", "3", "--workers", "1", "--cidr", cidr}, p.args...), create...)...); err != nil {
		return nil, err
	}
	out, err := nodectl(p.env, append([]string{"cluster", "show", "-o", "json"}, p.args...)...)
	if err != nil {
		return nil, err
	}
	var show struct {
		Nodes []struct{ Role, Address, Netns string } `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &show); err != nil {
		return nil, fmt.Errorf("cluster show: %w", err)
	}
	var cps, workers []string
	for _, n := range show.Nodes {
		if n.Role == "controlplane" {
			cps = append(cps, n.Address)
		} else {
			workers = append(workers, n.Address)
			p.workerNetns = n.Netns
		}
	}
	p.nodesFlags = []string{"--control-plane-nodes", strings.Join(cps, ","), "--worker-nodes", strings.Join(workers, ",")}
	if _, err := nodectl(p.env, "kubeconfig", p.kc); err != nil {
		return nil, err
	}
	// Two web pods behind a Service (a disruption budget allowing one
	// down), probed from the worker's namespace.
	web, err := os.ReadFile(webManifest)
	if err != nil {
		return nil, err
	}
	wf := filepath.Join(root, "web.yaml")
	if err := os.WriteFile(wf, []byte(strings.ReplaceAll(string(web), "BUSYBOX", images.Ref(images.Busybox, images.BusyboxVersion))), 0o600); err != nil {
		return nil, err
	}
	if _, err := p.kubectl("apply", "-f", wf); err != nil {
		return nil, err
	}
	if _, err := p.kubectl("rollout", "status", "deployment/web", "--timeout=120s"); err != nil {
		return nil, err
	}
	ip, err := p.kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		return nil, err
	}
	p.svc = ip + ":80"
	ok = true
	return p, nil
}

func (p *probedCluster) kubectl(a ...string) (string, error) {
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig", p.kc}, a...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(a, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// measure runs `nodectl cmd… --control-plane-nodes … --worker-nodes …`
// while a client creates a ConfigMap through the VIP and the worker asks
// the Service for its page, both every 100 ms, and returns what the
// clients saw and the command's output.
func (p *probedCluster) measure(cmd ...string) (rolloutResult, string, error) {
	r := rolloutResult{interval: 100 * time.Millisecond}
	svcProbe := probe.StartGap(r.interval, func(int) error {
		status, err := netnstest.HTTPGetIn(p.workerNetns, p.svc, time.Second)
		if err == nil && !strings.Contains(status, " 200 ") {
			err = fmt.Errorf("status %q", status)
		}
		return err
	})
	defer svcProbe.Stop()
	w, err := probe.StartConfigMaps(p.kc, "bench", r.interval)
	if err != nil {
		return r, "", err
	}
	defer w.Stop()
	time.Sleep(2 * time.Second) // writes before the operation
	start := time.Now()
	out, err := nodectl(p.env, append(cmd, p.nodesFlags...)...)
	r.total = time.Since(start)
	time.Sleep(2 * time.Second) // and after it
	w.Stop()
	svcProbe.Stop()
	if err != nil {
		return r, out, err
	}
	r.svcOK, r.svcFailed, r.svcLongest = svcProbe.Result()
	r.writes, r.failed, r.longest = w.Result()
	lost, err := w.Lost(context.Background())
	if err != nil {
		return r, out, err
	}
	r.lost = len(lost)
	for _, f := range w.Failures() {
		fmt.Println("ConfigMap write failed", f)
	}
	return r, out, nil
}

func (p *probedCluster) close() {
	_, _ = nodectl(p.env, append([]string{"cluster", "destroy"}, p.args...)...)
	os.RemoveAll(p.root)
}

// clients says in one line what the clients saw.
func (r rolloutResult) clients() string {
	return fmt.Sprintf("ConfigMaps %d acknowledged, %d failed, %d lost, longest gap %s; Service %d answers, %d failed, longest gap %s",
		r.writes, r.failed, r.lost, r.longest.Round(10*time.Millisecond), r.svcOK, r.svcFailed, r.svcLongest.Round(10*time.Millisecond))
}

// clientRows are the report's rows of what the clients saw.
func (r rolloutResult) clientRows(b *bytes.Buffer) {
	fmt.Fprintf(b, "| ConfigMaps acknowledged / failed / lost | %d / %d / %d |\n", r.writes, r.failed, r.lost)
	fmt.Fprintf(b, "| longest gap between acknowledged writes | %s |\n", r.longest.Round(10*time.Millisecond))
	fmt.Fprintf(b, "| Service of 2 web pods (PDB minAvailable 1), HTTP from the worker every %s: answers / failed | %d / %d |\n", r.interval, r.svcOK, r.svcFailed)
	fmt.Fprintf(b, "| longest gap between Service answers | %s |\n", r.svcLongest.Round(10*time.Millisecond))
}

func renderRollout(r rolloutResult) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s `nodectl cluster upgrade` of a netns Kubernetes cluster of 3 control planes and 1 worker to a second build (container mode: a new agent, the same images), while a client creates a ConfigMap through the VIP every %s and the worker asks a Service of two web pods for its page. Each node: health and etcd catch-up checked, leadership moved, cordon and drain, upgrade through its A/B slot and health gate, uncordon, cluster health. One round.\n\n", stamp(), r.interval)
	b.WriteString("| figure | value |\n| --- | --: |\n")
	fmt.Fprintf(&b, "| rollout, command to done | %s |\n", r.total.Round(100*time.Millisecond))
	fmt.Fprintf(&b, "| per node, drain to done, in order | %s |\n", strings.Join(r.perNode, ", "))
	r.clientRows(&b)
	b.WriteString("\nTargets (issue 19): the whole rollout ≤ 5 min, the longest write gap ≤ 2 s, 0 acknowledged writes lost. For comparison: Talos upgrades one node per `talosctl upgrade` call (its documentation publishes no cluster figure); k3s's system-upgrade-controller runs plans with `concurrency` and drains, with no published timing either.\n")
	return b.String()
}
