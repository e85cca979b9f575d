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
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
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
}

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
		Nodes []struct{ Role, Address string } `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &show); err != nil {
		return r, fmt.Errorf("cluster show: %w", err)
	}
	var cps, workers []string
	for _, n := range show.Nodes {
		if n.Role == "controlplane" {
			cps = append(cps, n.Address)
		} else {
			workers = append(workers, n.Address)
		}
	}
	kc := filepath.Join(root, "kubeconfig")
	if _, err := nodectl(env, "kubeconfig", kc); err != nil {
		return r, err
	}

	agent := filepath.Join(root, "machined-next")
	pkg := "github.com/ballast-os/ballast/pkg/version"
	later := time.Now().Add(time.Hour)
	build := exec.Command("go", "build", "-trimpath", "-o", agent, "-ldflags", "-s -w -X "+pkg+".Version=v0.0.0-bench-roll -X "+pkg+".CommitTime="+later.UTC().Format(time.RFC3339), "./cmd/machined")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return r, fmt.Errorf("build the second machined: %w: %s", err, out)
	}
	next := filepath.Join(root, "next")
	if err := benchBundle(next, agent, "v0.0.0-bench-roll", later); err != nil {
		return r, err
	}

	w, err := startWrites(kc, r.interval)
	if err != nil {
		return r, err
	}
	time.Sleep(2 * time.Second)
	start := time.Now()
	out, err = nodectl(env, "cluster", "upgrade", "--bundle", next, "--control-plane-nodes", strings.Join(cps, ","), "--worker-nodes", strings.Join(workers, ","))
	r.total = time.Since(start)
	time.Sleep(2 * time.Second)
	w.stop()
	if err != nil {
		return r, err
	}
	for _, m := range nodeDoneRE.FindAllStringSubmatch(out, -1) {
		r.perNode = append(r.perNode, m[1]+": "+m[2])
	}
	r.writes, r.failed, r.longest = len(w.acked), w.failed, w.longest
	lost, err := w.lost()
	if err != nil {
		return r, err
	}
	r.lost = lost
	fmt.Printf("rollout 3 CP + 1 W: %s (%s); ConfigMaps %d acknowledged, %d failed, %d lost, longest gap %s\n",
		r.total.Round(100*time.Millisecond), strings.Join(r.perNode, ", "), r.writes, r.failed, r.lost, r.longest.Round(10*time.Millisecond))
	return r, nil
}

// writes creates ConfigMaps through the cluster's endpoint at an interval.
type writes struct {
	cm      corev1client.ConfigMapInterface
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	acked   []string
	failed  int
	last    time.Time
	longest time.Duration
}

func startWrites(kubeconfig string, every time.Duration) (*writes, error) {
	data, err := os.ReadFile(kubeconfig)
	if err != nil {
		return nil, err
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		return nil, err
	}
	rc.Timeout = 2 * time.Second
	core, err := corev1client.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &writes{cm: core.ConfigMaps("default"), cancel: cancel, done: make(chan struct{}), last: time.Now()}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			name := fmt.Sprintf("bench-%06d", i)
			_, err := w.cm.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
			now := time.Now()
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, name)
				w.longest = max(w.longest, now.Sub(w.last))
				w.last = now
			} else if ctx.Err() == nil {
				w.failed++
			}
			w.mu.Unlock()
		}
	}()
	return w, nil
}

func (w *writes) stop() { w.cancel(); <-w.done }

// lost counts acknowledged ConfigMaps the API no longer has.
func (w *writes) lost() (int, error) {
	list, err := w.cm.List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	have := map[string]bool{}
	for _, c := range list.Items {
		have[c.Name] = true
	}
	n := 0
	for _, a := range w.acked {
		if !have[a] {
			n++
		}
	}
	return n, nil
}

func renderRollout(r rolloutResult) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s `nodectl cluster upgrade` of a netns Kubernetes cluster of 3 control planes and 1 worker to a second build (container mode: a new agent, the same images), while a client creates a ConfigMap through the VIP every %s. Each node: health and etcd catch-up checked, leadership moved, cordon and drain, upgrade through its A/B slot and health gate, uncordon, cluster health. One round.\n\n", stamp(), r.interval)
	b.WriteString("| figure | value |\n| --- | --: |\n")
	fmt.Fprintf(&b, "| rollout, command to done | %s |\n", r.total.Round(100*time.Millisecond))
	fmt.Fprintf(&b, "| per node, drain to done, in order | %s |\n", strings.Join(r.perNode, ", "))
	fmt.Fprintf(&b, "| ConfigMaps acknowledged / failed / lost | %d / %d / %d |\n", r.writes, r.failed, r.lost)
	fmt.Fprintf(&b, "| longest gap between acknowledged writes | %s |\n", r.longest.Round(10*time.Millisecond))
	b.WriteString("\nTargets (issue 19): the whole rollout ≤ 5 min, the longest write gap ≤ 2 s, 0 acknowledged writes lost. For comparison: Talos upgrades one node per `talosctl upgrade` call (its documentation publishes no cluster figure); k3s's system-upgrade-controller runs plans with `concurrency` and drains, with no published timing either.\n")
	return b.String()
}
