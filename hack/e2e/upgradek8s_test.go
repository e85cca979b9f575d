package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/hack/probe"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/images"
)

// The Kubernetes upgrade under test: from a release `make test` builds
// beside the pinned one (KUBERNETES_VERSION=v1.36.1 make kubernetes) to the
// pinned one.
const (
	k8sFrom = "v1.36.1"
	k8sTo   = config.DefaultKubernetesVersion
)

// TestKubernetesUpgrade creates a 3-control-plane, 1-worker netns cluster
// on Kubernetes v1.36.1 and upgrades it to v1.36.3 with `nodectl
// upgrade-k8s` while a client creates a ConfigMap through the VIP every
// 100 ms and a Deployment behind a Service (2 pods, a PodDisruptionBudget)
// is probed from the worker: no acknowledged ConfigMap may be lost, the
// longest gaps are logged (timings are benchmarks), no machined restarts,
// and every component reports the new release afterwards — each
// apiserver's /version, each control plane's controller-manager and
// scheduler containers, each Node's kubelet, every kube-proxy pod.
func TestKubernetesUpgrade(t *testing.T) {
	requireRoot(t)
	out := os.Getenv("BALLAST_OUT_DIR")
	for _, p := range []string{filepath.Join(out, "k8s", k8sFrom, "kubelet"), filepath.Join(out, "k8s", k8sFrom, "images"), filepath.Join(out, "k8s", k8sTo, "bundle", "manifest.json")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v: build both releases first (KUBERNETES_VERSION=%s make kubernetes; make kubernetes) — make test-e2e does", err, k8sFrom)
		}
	}
	bundleDir := filepath.Join(out, "k8s", k8sTo, "bundle")
	c := newLocalCluster(t, "e2ek8sup", "10.84.0.0/24")
	c.createKubernetes("--controlplanes", "3", "--workers", "1", "--kubernetes-version", k8sFrom)
	show := c.show()
	var cpAddrs []string
	var worker clusterNode
	for _, n := range show.Nodes {
		if n.Role == "controlplane" {
			cpAddrs = append(cpAddrs, n.Address)
		} else {
			worker = n
		}
	}
	if len(cpAddrs) != 3 || worker.Address == "" {
		t.Fatalf("want 3 control planes and a worker: %+v", show.Nodes)
	}
	nodesFlags := []string{"--control-plane-nodes", strings.Join(cpAddrs, ","), "--worker-nodes", worker.Address}
	kc := filepath.Join(c.root, "kubeconfig")
	c.must("kubeconfig", kc)
	k := kubectl{t: t, kubeconfig: kc}
	upgrade := func(extra ...string) run {
		return c.nodectl(append(append([]string{"upgrade-k8s", "--bundle", bundleDir}, nodesFlags...), extra...)...)
	}

	t.Run("the cluster starts on "+k8sFrom, func(t *testing.T) {
		assertRelease(t, c.on(t), k.on(t), show.Nodes, k8sFrom)
	})

	t.Run("refusals and --dry-run change nothing", func(t *testing.T) {
		c := c.on(t)
		if r := upgrade("--to", "v1.36.2"); r.code == 0 || !strings.Contains(r.stderr, "is a bundle of Kubernetes "+k8sTo+", not v1.36.2") {
			t.Errorf("a bundle of another release was not refused: %s", r)
		}
		if r := c.nodectl(append([]string{"upgrade-k8s", "--to", k8sTo, "--bundle", filepath.Join(out, "bundle")}, nodesFlags...)...); r.code == 0 || !strings.Contains(r.stderr, "is not a Kubernetes bundle") {
			t.Errorf("an OS bundle was not refused: %s", r)
		}
		r := c.must(append([]string{"upgrade-k8s", "--to", k8sTo, "--bundle", bundleDir, "--dry-run"}, nodesFlags...)...)
		for _, want := range []string{"Kubernetes upgrade " + k8sFrom + " → " + k8sTo, "1. kube-apiserver, one at a time:", "3.4 kubelet (drained", "4. cluster.kubernetesVersion:"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("the plan lacks %q:\n%s", want, r.stdout)
			}
		}
		assertRelease(t, c, k.on(t), show.Nodes, k8sFrom)
	})

	t.Run("upgrade-k8s moves every component with the API and a Service answering throughout", func(t *testing.T) {
		c := c.on(t)
		k := k.on(t)
		pids := map[string]int{}
		for _, n := range show.Nodes {
			pids[n.Name] = agentPID(t, n.StateDir)
		}
		web := startWeb(k, worker)
		defer web.Stop()
		cmW, err := probe.StartConfigMaps(kc, "k8sup", 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer cmW.Stop()
		time.Sleep(2 * time.Second)

		start := time.Now()
		r := upgrade("--to", k8sTo)
		took := time.Since(start)
		t.Logf("upgrade-k8s output:\n%s", r.stdout)
		if r.code != 0 {
			t.Fatalf("upgrade-k8s failed: %s", r)
		}
		time.Sleep(2 * time.Second)
		cmW.Stop()
		web.Stop()

		assertRelease(t, c, k, show.Nodes, k8sTo)
		for _, n := range show.Nodes {
			if pid := agentPID(t, n.StateDir); pid != pids[n.Name] {
				t.Errorf("%s: machined restarted (PID %d → %d): a Kubernetes upgrade must not reboot a node", n.Name, pids[n.Name], pid)
			}
		}
		cmAcked, cmFailed, gap := checkConfigMaps(t, cmW)
		c.health(nodesFlags...)
		webOK, webFailed, webGap := web.Result()
		t.Logf("upgrade-k8s %s → %s of 3 control planes and 1 worker: %s; ConfigMaps through the VIP: %d acknowledged, %d failed, longest gap without a successful write %s, 0 lost; Service web (2 pods, PDB minAvailable 1): %d answers, %d failed, longest gap %s",
			k8sFrom, k8sTo, took.Round(100*time.Millisecond), cmAcked, cmFailed, gap.Round(10*time.Millisecond), webOK, webFailed, webGap.Round(10*time.Millisecond))

		// Run again: nothing is left to do.
		again := upgrade("--to", k8sTo)
		if again.code != 0 || !strings.Contains(again.stdout, "nothing to do") {
			t.Errorf("a second upgrade-k8s: %s", again)
		}
	})
}

// assertRelease checks that every component of the cluster reports
// release: the nodes' configs, each apiserver's /version, the control
// planes' controller-manager and scheduler containers, each Node's
// kubelet and every kube-proxy pod.
func assertRelease(t *testing.T, c *localCluster, k kubectl, nodes []clusterNode, release string) {
	t.Helper()
	for _, n := range nodes {
		cfg, err := config.Decode([]byte(c.must("-n", n.Address, "get", "config").stdout))
		if err != nil {
			t.Fatalf("%s's config: %v", n.Name, err)
		}
		if got := cfg.WithDefaults(); got.Cluster.KubernetesVersion != release || got.Machine.Kubelet.Version != "" || got.Cluster.APIServer.Image != "" {
			t.Errorf("%s's config: kubernetesVersion %q, kubelet.version %q, apiServer.image %q; want %s and no overrides",
				n.Name, got.Cluster.KubernetesVersion, got.Machine.Kubelet.Version, got.Cluster.APIServer.Image, release)
		}
		if n.Role != "controlplane" {
			continue
		}
		var v struct {
			GitVersion string `json:"gitVersion"`
		}
		raw := k.must("--server", "https://"+n.Address+":6443", "get", "--raw", "/version")
		if err := json.Unmarshal([]byte(raw), &v); err != nil || v.GitVersion != release {
			t.Errorf("kube-apiserver on %s: /version %s (%v), want %s", n.Name, raw, err, release)
		}
		ctrs := c.must("-n", n.Address, "containers").stdout
		for _, comp := range images.ControlPlaneComponents {
			if !strings.Contains(ctrs, images.Ref(comp, release)) {
				t.Errorf("%s does not run %s:\n%s", n.Name, images.Ref(comp, release), ctrs)
			}
		}
	}
	kubelets := strings.Fields(k.must("get", "nodes", "-o", "jsonpath={.items[*].status.nodeInfo.kubeletVersion}"))
	if len(kubelets) != len(nodes) {
		t.Errorf("%d Nodes report a kubelet, want %d", len(kubelets), len(nodes))
	}
	for _, v := range kubelets {
		if v != release {
			t.Errorf("kubelets report %v, want all %s", kubelets, release)
			break
		}
	}
	k.must("-n", "kube-system", "rollout", "status", "daemonset/kube-proxy", "--timeout=180s")
	proxies := strings.Fields(k.must("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-proxy", "-o", "jsonpath={.items[*].spec.containers[0].image}"))
	if len(proxies) != len(nodes) {
		t.Errorf("%d kube-proxy pods, want %d: %v", len(proxies), len(nodes), proxies)
	}
	for _, img := range proxies {
		if img != images.Ref(images.KubeProxy, release) {
			t.Errorf("kube-proxy pods run %v, want all %s", proxies, images.Ref(images.KubeProxy, release))
			break
		}
	}
}
