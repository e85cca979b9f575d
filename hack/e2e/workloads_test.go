package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ballast-os/ballast/pkg/images"
	"github.com/ballast-os/ballast/pkg/pki"
)

// busybox is the test image `make images` packs (Debian's busybox-static).
var busybox = images.Ref(images.Busybox, images.BusyboxVersion)

// TestKubernetesWorkloads runs 3 control planes and 2 workers with kubelets
// on their own containerd, kube-proxy, CoreDNS and the host-gw pod network,
// and drives them with stock kubectl: nodes Ready with their zones and the
// control-plane taint, a Deployment spread over zones, a Service answering
// across nodes and by DNS name, logs and exec (through the kubelets' serving
// certificates, which the apiserver verifies), a worker's power loss with
// its pods rescheduled and its return, and a kubelet flag kubelet rejects.
func TestKubernetesWorkloads(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatalf("kubectl is not installed: %v", err)
	}
	for _, f := range []string{"containerd", "kubelet"} {
		if _, err := os.Stat(filepath.Join(binDir, f)); err != nil {
			t.Fatalf("%s missing next to machined (make images): %v", f, err)
		}
	}
	c := newLocalCluster(t, "e2ewl", "10.78.0.0/24")
	// Nodes are declared unreachable 20 s after their last heartbeat (the
	// default is 50 s); the test's pods tolerate that for 5 s.
	c.createKubernetes("--workers", "2", "--zones", "3",
		"--config-patch-control-plane", `{"cluster":{"controllerManager":{"extraArgs":{"node-monitor-grace-period":"20s"}}}}`)
	show := c.show()
	kc := filepath.Join(c.root, "kubeconfig")
	c.must("kubeconfig", kc)
	k := kubectl{t: t, kubeconfig: kc}
	byName := map[string]clusterNode{}
	for _, n := range show.Nodes {
		byName["e2ewl-"+n.Name] = n
	}
	w1, w2 := byName["e2ewl-w1"], byName["e2ewl-w2"]
	// health with every node (the cluster's state is not in the default
	// place, where nodectl would find the workers by itself).
	var cpAddrs []string
	for _, n := range show.Nodes {
		if n.Role == "controlplane" {
			cpAddrs = append(cpAddrs, n.Address)
		}
	}
	allNodes := []string{"health", "--control-plane-nodes", strings.Join(cpAddrs, ","), "--worker-nodes", w1.Address + "," + w2.Address}

	t.Run("nodes Ready with zones, roles and the control-plane taint", func(t *testing.T) {
		k := k.on(t)
		nodes := k.nodes()
		if len(nodes) != 5 {
			t.Fatalf("%d nodes, want 5: %v", len(nodes), nodes)
		}
		want := map[string]string{"e2ewl-cp1": "zone-a", "e2ewl-cp2": "zone-b", "e2ewl-cp3": "zone-c", "e2ewl-w1": "zone-a", "e2ewl-w2": "zone-b"}
		for _, n := range nodes {
			if !n.ready() {
				t.Errorf("%s is not Ready", n.Metadata.Name)
			}
			if z := n.Metadata.Labels["topology.kubernetes.io/zone"]; z != want[n.Metadata.Name] {
				t.Errorf("%s zone %q, want %q", n.Metadata.Name, z, want[n.Metadata.Name])
			}
			_, cpLabel := n.Metadata.Labels["node-role.kubernetes.io/control-plane"]
			cpTaint := slices.ContainsFunc(n.Spec.Taints, func(t taint) bool {
				return t.Key == "node-role.kubernetes.io/control-plane" && t.Effect == "NoSchedule"
			})
			isCP := strings.Contains(n.Metadata.Name, "-cp")
			if cpLabel != isCP || cpTaint != isCP {
				t.Errorf("%s: control-plane label %v, taint %v, want both %v", n.Metadata.Name, cpLabel, cpTaint, isCP)
			}
			if n.Spec.PodCIDR == "" {
				t.Errorf("%s has no pod CIDR", n.Metadata.Name)
			}
		}
		r := c.on(t).must(allNodes...)
		for _, w := range []string{"5 nodes registered and Ready", "CoreDNS available"} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("health does not report %q:\n%s", w, r.stdout)
			}
		}
	})

	t.Run("a Deployment spread over zones lands on different nodes", func(t *testing.T) {
		k := k.on(t)
		k.apply(webManifest)
		k.must("rollout", "status", "deployment/web", "--timeout=120s")
		pods := k.pods("app=web")
		if len(pods) != 3 {
			t.Fatalf("%d web pods, want 3", len(pods))
		}
		nodes, zones := map[string]bool{}, map[string]bool{}
		zoneOf := map[string]string{}
		for _, n := range k.nodes() {
			zoneOf[n.Metadata.Name] = n.Metadata.Labels["topology.kubernetes.io/zone"]
		}
		for _, p := range pods {
			nodes[p.Spec.NodeName] = true
			zones[zoneOf[p.Spec.NodeName]] = true
		}
		if len(nodes) != 3 || len(zones) != 3 {
			t.Fatalf("3 replicas on nodes %v in zones %v, want 3 of each", nodes, zones)
		}
	})

	t.Run("a Service answers from another node and by DNS name", func(t *testing.T) {
		k := k.on(t)
		k.must("run", "client", "--image", busybox, "--image-pull-policy=IfNotPresent", "--restart=Never",
			"--overrides", `{"spec":{"nodeName":"e2ewl-w1"}}`, "--", "sleep", "3600")
		k.must("wait", "--for=condition=Ready", "pod/client", "--timeout=60s")
		ip := k.must("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
		podNode := map[string]string{}
		for _, p := range k.pods("app=web") {
			podNode[p.Metadata.Name] = p.Spec.NodeName
		}
		for _, target := range []string{ip, "web", "web.default.svc.cluster.local"} {
			seen := map[string]bool{}
			waitFor(t, "answers through "+target+" from a pod on another node", 60*time.Second, func() error {
				out, err := k.run("exec", "client", "--", "sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 `+target+` 80`)
				if err != nil {
					return err
				}
				for pod := range podNode {
					if strings.Contains(out, "hello from "+pod) {
						seen[pod] = true
						if podNode[pod] != "e2ewl-w1" {
							return nil
						}
					}
				}
				return fmt.Errorf("answers so far from %v (all on the client's node?): %q", seen, out)
			})
		}
		out := k.must("exec", "client", "--", "nslookup", "kubernetes.default.svc.cluster.local")
		if !strings.Contains(out, "10.96.0.1") {
			t.Fatalf("nslookup kubernetes.default: %s", out)
		}
	})

	t.Run("kubectl logs and exec reach the kubelets", func(t *testing.T) {
		k := k.on(t)
		for _, p := range k.pods("app=web") {
			logs := k.must("logs", p.Metadata.Name)
			if !strings.Contains(logs, "serving "+p.Metadata.Name) {
				t.Errorf("logs of %s on %s: %q", p.Metadata.Name, p.Spec.NodeName, logs)
			}
			if out := k.must("exec", p.Metadata.Name, "--", "cat", "/etc/hostname"); out != p.Metadata.Name {
				t.Errorf("exec in %s: hostname %q", p.Metadata.Name, out)
			}
		}
		// The kubelets serve certificates of the kubelet-serving CA, approved
		// by machined, which the apiserver verifies (--kubelet-certificate-authority).
		out := k.must("get", "csr", "-o", "jsonpath={range .items[?(@.spec.signerName==\"kubernetes.io/kubelet-serving\")]}{.spec.username} {.status.conditions[0].reason}{\"\\n\"}{end}")
		approved := 0
		for _, l := range lines(out) {
			if strings.HasSuffix(l, " BallastApproved") {
				approved++
			}
		}
		if approved < 5 {
			t.Fatalf("%d serving CSRs approved by Ballast, want 5:\n%s", approved, out)
		}
	})

	t.Run("Kubernetes-side trust", func(t *testing.T) {
		testKubeletTrust(t, c.on(t), byName["e2ewl-cp1"], w1, w2, show.Endpoint)
	})

	t.Run("a worker's power loss reschedules its pods; it comes back Ready", func(t *testing.T) {
		k := k.on(t)
		spread, err := os.ReadFile("testdata/spread.yaml")
		if err != nil {
			t.Fatal(err)
		}
		k.apply(string(spread))
		k.must("rollout", "status", "deployment/spread", "--timeout=120s")
		on := func(node string) int {
			n := 0
			for _, p := range k.pods("app=spread") {
				if p.Spec.NodeName == node && p.Status.Phase == "Running" && p.Metadata.DeletionTimestamp == "" {
					n++
				}
			}
			return n
		}
		if on("e2ewl-w1") == 0 || on("e2ewl-w2") == 0 {
			t.Fatalf("spread pods not on both workers: w1 %d, w2 %d", on("e2ewl-w1"), on("e2ewl-w2"))
		}
		c.on(t).ip(t, "link", "set", w1.Veth, "down")
		powerOff(t, w1)
		lost := time.Now()
		waitFor(t, "w1 NotReady", 90*time.Second, func() error {
			for _, n := range k.nodes() {
				if n.Metadata.Name == "e2ewl-w1" && n.ready() {
					return errors.New("still Ready")
				}
			}
			return nil
		})
		t.Logf("w1 NotReady %s after the power loss", time.Since(lost).Round(time.Second))
		waitFor(t, "all 4 spread pods Running on w2", 120*time.Second, func() error {
			if n := on("e2ewl-w2"); n != 4 {
				return fmt.Errorf("%d Running on w2", n)
			}
			return nil
		})
		t.Logf("pods Running on w2 %s after the power loss", time.Since(lost).Round(time.Second))
		c.on(t).ip(t, "link", "set", w1.Veth, "up")
		c.on(t).startNode(w1.Netns, w1.StateDir, w1.Address)
		waitFor(t, "w1 Ready again", 180*time.Second, func() error {
			for _, n := range k.nodes() {
				if n.Metadata.Name == "e2ewl-w1" && n.ready() {
					return nil
				}
			}
			return errors.New("not Ready")
		})
	})

	t.Run("a hung kubelet is restarted by its health check", func(t *testing.T) {
		k := k.on(t)
		pid := kubeletPID(t, w2)
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
		var next int
		waitFor(t, "a new kubelet on "+w2.Name, 90*time.Second, func() error {
			if next = kubeletPIDOrZero(w2); next == 0 || next == pid {
				return fmt.Errorf("kubelet pid %d", next)
			}
			return nil
		})
		t.Logf("hung kubelet (pid %d) replaced by pid %d after %s", pid, next, time.Since(stopped).Round(time.Second))
		waitFor(t, w2.Name+" Ready again", 2*time.Minute, func() error {
			if out := k.must("get", "node", "e2ewl-w2", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`); out != "True" {
				return fmt.Errorf("Ready=%s", out)
			}
			return nil
		})
		// The event and the counter say why.
		if out := c.on(t).must("-n", w2.Address, "logs", "kubelet").stdout; !strings.Contains(out, "health check failed 3 times in a row") {
			t.Fatalf("the kubelet's log does not say it was restarted for its health:\n%s", tail(out, 20))
		}
	})

	t.Run("a hostname change keeps the node working under its new name", func(t *testing.T) {
		c, k := c.on(t), k.on(t)
		c.liveApply(t, w1.Address, `{"machine":{"network":{"hostname":"e2ewl-w1b"}}}`)
		// The old name's Node is the operator's to remove; removed even
		// when this test fails, so the next ones see a healthy cluster.
		t.Cleanup(func() { _, _ = k.run("delete", "node", "e2ewl-w1", "--ignore-not-found") })
		waitFor(t, "Node e2ewl-w1b Ready", 3*time.Minute, func() error {
			out, err := k.run("get", "node", "e2ewl-w1b", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			if err != nil || out != "True" {
				return fmt.Errorf("Ready=%q %v", out, err)
			}
			return nil
		})
		// Its kubelet is system:node:e2ewl-w1b now, with a serving
		// certificate of the new name: logs reach it.
		pair, err := os.ReadFile(filepath.Join(w1.StateDir, "var", "lib", "kubelet", "pki", "kubelet-client-current.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(certSubject(t, pair), "system:node:e2ewl-w1b") {
			t.Fatalf("kubelet client certificate names %s", certSubject(t, pair))
		}
		k.must("run", "renamed", "--image="+busybox, "--restart=Never", "--overrides",
			`{"spec":{"nodeName":"e2ewl-w1b","tolerations":[{"operator":"Exists"}]}}`, "--", "sh", "-c", "echo hello-renamed; sleep 3600")
		waitFor(t, "logs from the renamed node", 2*time.Minute, func() error {
			out, err := k.run("logs", "renamed")
			if err != nil || !strings.Contains(out, "hello-renamed") {
				return fmt.Errorf("logs: %q %v", out, err)
			}
			return nil
		})
		k.must("delete", "pod", "renamed", "--now")
	})

	t.Run("a kubelet flag kubelet rejects is reported and the node keeps running", func(t *testing.T) {
		c := c.on(t)
		c.liveApply(t, w2.Address, `{"machine":{"kubelet":{"extraArgs":{"no-such-flag":"1"}}}}`)
		waitFor(t, "health reports kubelet's own message", 60*time.Second, func() error {
			r := c.nodectl(allNodes...)
			if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "unknown flag: --no-such-flag") {
				return fmt.Errorf("health: %s", r)
			}
			return nil
		})
		c.must("-n", w2.Address, "version") // the node's agent still answers
		c.liveApply(t, w2.Address, `{"machine":{"kubelet":{"extraArgs":{"no-such-flag":null}}}}`)
		waitFor(t, "healthy again", 120*time.Second, func() error {
			if r := c.nodectl(allNodes...); r.code != 0 {
				return errors.New(r.String())
			}
			return nil
		})
		// Validation refuses what it can know: flags Ballast owns.
		active := filepath.Join(t.TempDir(), "active.yaml")
		if err := os.WriteFile(active, []byte(c.must("-n", w2.Address, "get", "config").stdout), 0o600); err != nil {
			t.Fatal(err)
		}
		r := c.nodectl("-n", w2.Address, "apply-config", "--mode", "no-reboot", "--file", active,
			"--config-patch", `{"machine":{"kubelet":{"extraArgs":{"root-dir":"/tmp"}}}}`)
		if r.code == 0 || !strings.Contains(r.stderr, "set by Ballast") {
			t.Fatalf("apply-config with an owned kubelet flag: %s", r)
		}
	})

	t.Run("the support bundle holds every node's view and no secret", func(t *testing.T) {
		testSupportBundle(t, c.on(t), append(slices.Clone(cpAddrs), w1.Address, w2.Address))
	})

	t.Run("every node ships its logs to a real receiver, added and removed live", func(t *testing.T) {
		testLogShipping(t, c.on(t), append(slices.Clone(cpAddrs), w1.Address, w2.Address))
	})

	t.Run("node tools show a node's own processes, sockets, memory, mounts and usage; reads stay in the allow-list", func(t *testing.T) {
		testNodeTools(t, c.on(t), w2.Address, cpAddrs[0])
	})
}

const webManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      tolerations: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: DoNotSchedule
          labelSelector: {matchLabels: {app: web}}
      containers:
        - name: web
          image: BUSYBOX
          imagePullPolicy: IfNotPresent
          command: [sh, -c, 'mkdir -p /www && echo "hello from $(hostname)" > /www/index.html && echo "serving $(hostname)" && exec httpd -f -p 8080 -h /www']
          ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`

type taint struct {
	Key    string `json:"key"`
	Effect string `json:"effect"`
}

type kubeNode struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		PodCIDR string  `json:"podCIDR"`
		Taints  []taint `json:"taints"`
	} `json:"spec"`
	Status struct {
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
	} `json:"status"`
}

func (n kubeNode) ready() bool {
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

type kubePod struct {
	Metadata struct {
		Name              string `json:"name"`
		DeletionTimestamp string `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase string `json:"phase"`
	} `json:"status"`
}

func (k kubectl) nodes() []kubeNode {
	k.t.Helper()
	var list struct {
		Items []kubeNode `json:"items"`
	}
	if err := json.Unmarshal([]byte(k.must("get", "nodes", "-o", "json")), &list); err != nil {
		k.t.Fatal(err)
	}
	return list.Items
}

func (k kubectl) pods(selector string) []kubePod {
	k.t.Helper()
	var list struct {
		Items []kubePod `json:"items"`
	}
	if err := json.Unmarshal([]byte(k.must("get", "pods", "-l", selector, "-o", "json")), &list); err != nil {
		k.t.Fatal(err)
	}
	return list.Items
}

// apply applies a manifest (BUSYBOX replaced by the test image).
func (k kubectl) apply(manifest string) {
	k.t.Helper()
	f := filepath.Join(k.t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(f, []byte(strings.ReplaceAll(manifest, "BUSYBOX", busybox)), 0o600); err != nil {
		k.t.Fatal(err)
	}
	k.must("apply", "-f", f)
}

// kubeletPID is the host PID of node n's kubelet.
func kubeletPID(t *testing.T, n clusterNode) int {
	t.Helper()
	pid := kubeletPIDOrZero(n)
	if pid == 0 {
		t.Fatalf("no kubelet of %s", n.Name)
	}
	return pid
}

// kubeletPIDOrZero finds node n's kubelet by its command line (its root
// directory is under the node's state directory); 0 when none runs.
func kubeletPIDOrZero(n clusterNode) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if filepath.Base(args[0]) == "kubelet" && strings.Contains(string(cmd), "--root-dir="+filepath.Join(n.StateDir, "var")) {
			return pid
		}
	}
	return 0
}

// certSubject is the subject of the first certificate in pemData.
func certSubject(t *testing.T, pemData []byte) string {
	t.Helper()
	c, err := pki.ParseCert(pemData)
	if err != nil {
		t.Fatal(err)
	}
	return c.Subject.String()
}
