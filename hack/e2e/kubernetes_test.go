package e2e

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ballast-os/ballast/pkg/cluster"
)

// TestKubernetesControlPlane runs a 3-control-plane cluster with the real
// components (containerd, kube-apiserver, kube-controller-manager,
// kube-scheduler from the images `make images` builds) and drives it with
// stock kubectl and etcdctl: readiness through the VIP, leader leases and
// their failover, a ConfigMap, Secrets encrypted at rest, VIP moves when an
// apiserver stops or its node loses power, per-node container isolation,
// and certificate rotation that keeps the API answering.
func TestKubernetesControlPlane(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatalf("kubectl is not installed: %v", err)
	}
	for _, f := range []string{"containerd", "containerd-shim-runc-v2"} {
		if _, err := os.Stat(filepath.Join(binDir, f)); err != nil {
			t.Fatalf("%s missing next to machined (make images): %v", f, err)
		}
	}
	c := newLocalCluster(t, "e2ek8s", "10.79.0.0/24")
	c.createKubernetes("--workers", "0")
	show := c.show()
	kc := filepath.Join(c.root, "kubeconfig")
	c.must("kubeconfig", kc)
	k := kubectl{t: t, kubeconfig: kc}
	byName := map[string]clusterNode{}
	for _, n := range show.Nodes {
		byName["e2ek8s-"+n.Name] = n
	}

	t.Run("kubectl through the VIP", func(t *testing.T) {
		k := k.on(t)
		if out := k.must("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"); out != show.Endpoint {
			t.Fatalf("kubeconfig server %q, want the endpoint %q", out, show.Endpoint)
		}
		if out := k.must("get", "--raw=/readyz"); out != "ok" {
			t.Fatalf("/readyz = %q", out)
		}
		for _, lease := range []string{"kube-scheduler", "kube-controller-manager"} {
			waitFor(t, lease+" lease held", 60*time.Second, func() error {
				if h := k.leaseHolder(lease); h == "" {
					return errors.New("no holder")
				}
				return nil
			})
		}
		k.must("create", "configmap", "e2e", "--from-literal=greeting=hello-ballast")
		if out := k.must("get", "configmap", "e2e", "-o", "jsonpath={.data.greeting}"); out != "hello-ballast" {
			t.Fatalf("ConfigMap round trip: %q", out)
		}
		r := c.on(t).must("health")
		for _, want := range []string{"kube-apiserver ready on 10.79.0.2", "answers /readyz", "leases kube-scheduler and kube-controller-manager held"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("health does not report %q:\n%s", want, r.stdout)
			}
		}
	})

	t.Run("Secrets are encrypted at rest", func(t *testing.T) {
		k := k.on(t)
		k.must("create", "secret", "generic", "e2e-secret", "--from-literal=password=plaintext-must-not-show")
		c := c.on(t)
		cp1 := show.Nodes[0]
		raw, err := c.etcdctl("https://"+cp1.Address+":2379", "get", "/registry/secrets/default/e2e-secret")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(raw, "plaintext-must-not-show") || !strings.Contains(raw, "k8s:enc:secretbox:v1:") {
			t.Fatalf("the Secret in etcd is not secretbox-encrypted:\n%q", raw)
		}
		if out := k.must("get", "secret", "e2e-secret", "-o", "jsonpath={.data.password}"); out == "" {
			t.Fatal("the Secret does not read back")
		}
	})

	t.Run("each node's containers live in its own cgroup, namespace and containerd", func(t *testing.T) {
		for _, n := range show.Nodes {
			ctrs := systemContainers(t, c.on(t), n.Address)
			if len(ctrs) != 3 {
				t.Fatalf("%s runs %d system containers, want 3: %v", n.Name, len(ctrs), ctrs)
			}
			netns := nsInode(t, "/run/netns/"+n.Netns)
			for id, pid := range ctrs {
				data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
				if err != nil {
					t.Fatalf("%s %s: %v", n.Name, id, err)
				}
				if want := "/ballast/e2ek8s-" + n.Name + "/" + id; !strings.Contains(string(data), want) {
					t.Fatalf("%s %s (pid %d) is not in cgroup %s:\n%s", n.Name, id, pid, want, data)
				}
				if got := nsInode(t, fmt.Sprintf("/proc/%d/ns/net", pid)); got != netns {
					t.Fatalf("%s %s (pid %d) is not in the node's network namespace %s", n.Name, id, pid, n.Netns)
				}
			}
			// The node's containerd serves its own socket from its own
			// state and runs in the node's namespace.
			pidData, err := os.ReadFile(filepath.Join(n.StateDir, "var", "run", "containerd", "containerd.pid"))
			if err != nil {
				t.Fatalf("%s: containerd pid file: %v", n.Name, err)
			}
			pid := strings.TrimSpace(string(pidData))
			cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline")
			if err != nil || !strings.Contains(string(cmdline), n.StateDir) {
				t.Fatalf("%s: containerd %s is not the node's (%q, %v)", n.Name, pid, cmdline, err)
			}
			if got := nsInode(t, "/proc/"+pid+"/ns/net"); got != netns {
				t.Fatalf("%s: containerd %s is not in the node's network namespace", n.Name, pid)
			}
		}
	})

	t.Run("each component's container sees only the files it uses", func(t *testing.T) {
		// What the running containers really mount (their mountinfo), not
		// what Ballast meant to: a key a component has no use for fails.
		forbidden := map[string][]string{
			"kube-apiserver":          {"ca.key", "kubelet-serving-ca.key", "machined.kubeconfig", "controller-manager.kubeconfig", "scheduler.kubeconfig"},
			"kube-controller-manager": {"apiserver.key", "apiserver-etcd-client.key", "apiserver-kubelet-client.key", "front-proxy-client.key", "encryption-config.yaml", "machined.kubeconfig", "scheduler.kubeconfig"},
			"kube-scheduler":          {"ca.key", "kubelet-serving-ca.key", "sa.key", "apiserver.key", "apiserver-etcd-client.key", "encryption-config.yaml", "machined.kubeconfig", "controller-manager.kubeconfig"},
		}
		needed := map[string]string{"kube-apiserver": "apiserver.key", "kube-controller-manager": "ca.key", "kube-scheduler": "scheduler.kubeconfig"}
		for _, n := range show.Nodes {
			for id, pid := range systemContainers(t, c.on(t), n.Address) {
				info, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
				if err != nil {
					t.Fatalf("%s %s: %v", n.Name, id, err)
				}
				var files []string
				for _, l := range strings.Split(string(info), "\n") {
					f := strings.Fields(l)
					if len(f) > 4 && strings.HasPrefix(f[4], "/etc/kubernetes") {
						if f[4] == "/etc/kubernetes" {
							t.Errorf("%s %s mounts the whole directory", n.Name, id)
						}
						files = append(files, filepath.Base(f[4]))
					}
				}
				for _, bad := range forbidden[id] {
					if slices.Contains(files, bad) {
						t.Errorf("%s %s sees %s, which it has no use for (mounts: %v)", n.Name, id, bad, files)
					}
				}
				if !slices.Contains(files, needed[id]) {
					t.Errorf("%s %s lacks %s (mounts: %v)", n.Name, id, needed[id], files)
				}
			}
		}
	})

	t.Run("stopping kube-apiserver on the VIP holder moves the VIP", func(t *testing.T) {
		c, k := c.on(t), k.on(t)
		holder := vipHolder(t, c, show.Nodes[0].Address)
		h := nodeNamed(t, byName, holder)
		var addrs []string
		for _, n := range show.Nodes {
			addrs = append(addrs, n.Address)
		}
		follow := c.followEvents(strings.Join(addrs, ","))
		c.must("-n", h.Address, "service", "kube-apiserver", "stop")
		var taker string
		waitFor(t, "VIP held by another node", 60*time.Second, func() error {
			if taker = vipHolder(t, c, otherThan(show.Nodes, h).Address); taker == holder {
				return fmt.Errorf("holder %q", taker)
			}
			return nil
		})
		waitFor(t, "kubectl through the VIP", 30*time.Second, func() error { return k.readyz() })
		c.must("-n", h.Address, "service", "kube-apiserver", "start")
		waitFor(t, "cluster healthy", 2*time.Minute, func() error { return c.healthErr() })
		// nodectl events -f over every control plane saw it happen: the
		// apiserver stopping and the VIP released on the old holder, the
		// VIP acquired on the new one.
		want := []eventMatch{
			{node: h.Address, kind: "service", source: "kube-apiserver", field: "state", value: "Stopped"},
			{node: h.Address, kind: "vip", source: "vip", field: "action", value: "released"},
			{node: nodeNamed(t, byName, taker).Address, kind: "vip", source: "vip", field: "action", value: "acquired"},
		}
		waitFor(t, "the VIP's move in nodectl events -f", 30*time.Second, func() error { return follow.has(want...) })
		follow.stop()
		t.Logf("events -f: %d events from %d nodes; the VIP acquired event reached the follower %s after it happened",
			follow.count(), len(addrs), follow.delay(want[2]))
		// Without -f, the same events are kept on the node.
		past := c.must("-n", h.Address, "events", "--since", "5m")
		if !strings.Contains(past.stdout, "released") || !strings.Contains(past.stdout, "kube-apiserver") {
			t.Fatalf("nodectl events --since 5m on the old holder:\n%s", past.stdout)
		}
	})

	t.Run("nodectl dashboard draws every node and shows a service stopping", func(t *testing.T) {
		var addrs []string
		for _, n := range show.Nodes {
			addrs = append(addrs, n.Address)
		}
		testDashboard(t, c.on(t), addrs)
	})

	t.Run("Debian's Prometheus scrapes every node with the config nodectl writes", func(t *testing.T) {
		var addrs []string
		for _, n := range show.Nodes {
			addrs = append(addrs, n.Address)
		}
		testPrometheus(t, c.on(t), addrs)
	})

	t.Run("the controller-manager lease moves when its node loses power", func(t *testing.T) {
		c, k := c.on(t), k.on(t)
		holder := k.leaseHolder("kube-controller-manager")
		node := nodeNamed(t, byName, strings.SplitN(holder, "_", 2)[0])
		powerOff(t, node)
		waitFor(t, "another node holds the lease", 2*time.Minute, func() error {
			if err := k.readyz(); err != nil {
				return err
			}
			if now := k.leaseHolder("kube-controller-manager"); now == "" || strings.HasPrefix(now, "e2ek8s-"+node.Name+"_") {
				return fmt.Errorf("holder %q", now)
			}
			return nil
		})
		c.startNode(node.Netns, node.StateDir, node.Address)
		waitFor(t, "cluster healthy after the node came back", 3*time.Minute, func() error { return c.healthErr() })
	})

	t.Run("kubectl works again through the VIP when its holder loses power", func(t *testing.T) {
		c, k := c.on(t), k.on(t)
		holder := vipHolder(t, c, show.Nodes[0].Address)
		h := nodeNamed(t, byName, holder)
		powerOff(t, h)
		waitFor(t, "kubectl through the VIP", 2*time.Minute, func() error { return k.readyz() })
		if now := vipHolder(t, c, otherThan(show.Nodes, h).Address); now == holder {
			t.Fatalf("VIP still claimed by the dead node %s", holder)
		}
		c.startNode(h.Netns, h.StateDir, h.Address)
		waitFor(t, "cluster healthy after the node came back", 3*time.Minute, func() error { return c.healthErr() })
	})

	t.Run("live: scheduler extraArgs", func(t *testing.T) {
		c := c.on(t)
		for _, n := range show.Nodes {
			c.liveApply(t, n.Address, `{"cluster":{"scheduler":{"extraArgs":{"v":"3"}}}}`)
		}
		for _, n := range show.Nodes {
			waitFor(t, n.Name+"'s kube-scheduler runs with --v=3", 3*time.Minute, func() error {
				pid := systemContainers(t, c, n.Address)["kube-scheduler"]
				cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				if err != nil {
					return err
				}
				if !strings.Contains(string(cmdline), "--v=3\x00") {
					return fmt.Errorf("command line %q", strings.ReplaceAll(string(cmdline), "\x00", " "))
				}
				return nil
			})
		}
		waitFor(t, "cluster healthy", 3*time.Minute, func() error { return c.healthErr() })
	})

	t.Run("bootstrap manifests: the newer set wins, never a fight", func(t *testing.T) {
		k := k.on(t)
		record := func() string {
			return k.must("get", "configmap", "-n", "kube-system", "ballast-manifests", "-o", "jsonpath={.data.version} {.data.state}")
		}
		verbs := func() string {
			return k.must("get", "clusterrole", "ballast:pod-network", "-o", "jsonpath={.rules[0].verbs}")
		}
		ours := record()
		if !strings.HasSuffix(ours, " applied") {
			t.Fatalf("record %q", ours)
		}
		// A control plane of a newer Ballast has applied its set: ours
		// must leave the objects alone.
		k.must("patch", "configmap", "-n", "kube-system", "ballast-manifests", "--type", "merge", "-p",
			`{"data":{"version":"9-ffffffffffffffff","kubernetesVersion":"v1.99.0","state":"applied","by":"a-newer-control-plane"}}`)
		k.must("patch", "clusterrole", "ballast:pod-network", "--type", "json", "-p", `[{"op":"add","path":"/rules/0/verbs/-","value":"get"}]`)
		time.Sleep(45 * time.Second) // longer than a control plane's recheck (30 s)
		if got := record(); got != "9-ffffffffffffffff applied" {
			t.Fatalf("a control plane with older manifests overwrote the newer record: %q", got)
		}
		if v := verbs(); !strings.Contains(v, "get") {
			t.Fatalf("a control plane with older manifests re-applied over newer ones: verbs %s", v)
		}
		// The newer one goes away (its record says an older set): ours win.
		k.must("patch", "configmap", "-n", "kube-system", "ballast-manifests", "--type", "merge", "-p",
			`{"data":{"version":"1-0000000000000000","kubernetesVersion":"v1.30.0","state":"applied","by":"an-older-control-plane"}}`)
		waitFor(t, "our manifests applied again", 90*time.Second, func() error {
			if got := record(); got != ours {
				return fmt.Errorf("record %q, want %q", got, ours)
			}
			if v := verbs(); strings.Contains(v, "get") {
				return fmt.Errorf("verbs %s", v)
			}
			return nil
		})
	})

	t.Run("certificates are renewed and the API keeps answering", func(t *testing.T) {
		c := c.on(t)
		before := servedSerials(t, show.Nodes)
		// The shortest lifetime, applied live: every certificate outlives it,
		// so each node reissues at once and restarts its components, the
		// apiservers one at a time cluster-wide; two thirds of the lifetime
		// later they are due again, and renewed on their own.
		var samples, degraded atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				ready := 0
				for _, n := range show.Nodes {
					if apiserverReady(n.Address) {
						ready++
					}
				}
				samples.Add(1)
				if ready < 2 {
					degraded.Add(1)
				}
			}
		}()
		for _, n := range show.Nodes {
			c.liveApply(t, n.Address, `{"cluster":{"certificateLifetime":"3m"}}`)
		}
		var first map[string]*big.Int
		waitFor(t, "every apiserver serves a new certificate", 3*time.Minute, func() (err error) {
			first, err = newSerials(t, show.Nodes, before)
			return err
		})
		waitFor(t, "renewed again when a third of the lifetime is left", 4*time.Minute, func() error {
			_, err := newSerials(t, show.Nodes, first)
			return err
		})
		for _, n := range show.Nodes {
			c.liveApply(t, n.Address, `{"cluster":{"certificateLifetime":"8760h"}}`)
		}
		close(stop)
		wg.Wait()
		t.Logf("rotation: %d samples of the three apiservers, %d with fewer than two ready", samples.Load(), degraded.Load())
		if degraded.Load() > 0 {
			t.Fatalf("%d of %d samples had fewer than two apiservers ready: restarts were not one at a time", degraded.Load(), samples.Load())
		}
		waitFor(t, "cluster healthy", 3*time.Minute, func() error { return c.healthErr() })
		if err := k.on(t).readyz(); err != nil {
			t.Fatal(err)
		}
	})
}

// systemContainers are a node's system containers by ID, with the host PID
// of each one's task (0 when it has none).
func systemContainers(t *testing.T, c *localCluster, addr string) map[string]uint32 {
	t.Helper()
	var results []struct {
		Result struct {
			Containers []struct {
				ID  string `json:"id"`
				Pid uint32 `json:"pid"`
			} `json:"containers"`
		} `json:"result"`
	}
	out := c.must("-n", addr, "containers", "-o", "json").stdout
	if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) != 1 {
		t.Fatalf("containers -o json: %v\n%s", err, out)
	}
	ctrs := map[string]uint32{}
	for _, ctr := range results[0].Result.Containers {
		ctrs[ctr.ID] = ctr.Pid
	}
	return ctrs
}

// nsInode identifies a namespace by the inode of its file.
func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatalf("namespace %s: %v", path, err)
	}
	return st.Ino
}

// kubectl runs stock kubectl with a kubeconfig.
type kubectl struct {
	t          *testing.T
	kubeconfig string
}

func (k kubectl) on(t *testing.T) kubectl { k.t = t; return k }

func (k kubectl) run(args ...string) (string, error) {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", k.kubeconfig, "--request-timeout=10s"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

func (k kubectl) must(args ...string) string {
	k.t.Helper()
	out, err := k.run(args...)
	if err != nil {
		k.t.Fatal(err)
	}
	return out
}

func (k kubectl) readyz() error {
	out, err := k.run("get", "--raw=/readyz")
	if err == nil && out != "ok" {
		err = fmt.Errorf("/readyz: %q", out)
	}
	return err
}

func (k kubectl) leaseHolder(name string) string {
	out, _ := k.run("-n", "kube-system", "get", "lease", name, "-o", "jsonpath={.spec.holderIdentity}")
	return out
}

func (c *localCluster) healthErr() error {
	r := c.nodectl("health")
	if r.code != 0 {
		return errors.New(r.String())
	}
	return nil
}

// vipHolder asks a node who holds the VIP, waiting until someone does.
func vipHolder(t *testing.T, c *localCluster, addr string) string {
	t.Helper()
	var holder string
	waitFor(t, "a VIP holder", time.Minute, func() error {
		r := c.nodectl("-n", addr, "get", "vip", "-o", "json")
		var v []struct {
			Result struct {
				Holder string `json:"holder"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || len(v) != 1 {
			return fmt.Errorf("get vip: %v: %s", err, r)
		}
		if holder = v[0].Result.Holder; holder == "" {
			return errors.New("no holder")
		}
		return nil
	})
	return holder
}

// node returns the node of a hostname (a VIP or lease holder).
func nodeNamed(t *testing.T, byName map[string]clusterNode, hostname string) clusterNode {
	t.Helper()
	n, ok := byName[hostname]
	if !ok || n.Address == "" {
		t.Fatalf("%q is no node of the cluster", hostname)
	}
	return n
}

func otherThan(nodes []clusterNode, n clusterNode) clusterNode {
	for _, o := range nodes {
		if o.Name != n.Name && o.Role == n.Role {
			return o
		}
	}
	return n
}

// powerOff kills everything of a node at once, as a power loss would:
// machined, containerd, the kubelet, the shims, the component containers
// and the pods (in network namespaces of their own, found by the node's
// cgroups).
func powerOff(t *testing.T, n clusterNode) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "pids", n.Netns).Output()
	if err != nil {
		t.Fatalf("ip netns pids %s: %v", n.Netns, err)
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	cluster.KillCgroupProcesses(strings.TrimPrefix(n.Netns, "ballast-"))
	waitFor(t, n.Name+" powered off", 20*time.Second, func() error {
		out, _ := exec.Command("ip", "netns", "pids", n.Netns).Output()
		if s := strings.TrimSpace(string(out)); s != "" {
			return fmt.Errorf("still running: %s", s)
		}
		return nil
	})
}

// apiserverReady reports whether a node's apiserver answers /readyz.
func apiserverReady(addr string) bool {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", net.JoinHostPort(addr, "6443"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // readiness only
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("GET /readyz HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	return strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200")
}

// newSerials returns the served serials once every apiserver serves another
// certificate than in old.
func newSerials(t *testing.T, nodes []clusterNode, old map[string]*big.Int) (map[string]*big.Int, error) {
	now := servedSerials(t, nodes)
	for addr, s := range now {
		if s == nil {
			return nil, fmt.Errorf("%s does not answer", addr)
		}
		if s.Cmp(old[addr]) == 0 {
			return nil, fmt.Errorf("%s still serves serial %s", addr, s)
		}
	}
	return now, nil
}

// servedSerials are the serial numbers of the certificates the apiservers
// serve now (nil for one that does not answer).
func servedSerials(t *testing.T, nodes []clusterNode) map[string]*big.Int {
	t.Helper()
	out := map[string]*big.Int{}
	for _, n := range nodes {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", net.JoinHostPort(n.Address, "6443"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the certificate only
		if err != nil {
			out[n.Address] = nil // restarting
			continue
		}
		out[n.Address] = conn.ConnectionState().PeerCertificates[0].SerialNumber
		conn.Close()
	}
	return out
}
