package e2e

import (
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestLocalClusterHA creates a 3 control plane + 1 worker cluster (its
// configs are applied to all nodes at the same moment) and puts etcd
// membership through failures: kill -9, quorum guard, graceful leave and
// rejoin, a stale learner, an address change.
func TestLocalClusterHA(t *testing.T) {
	requireRoot(t)
	c := newLocalCluster(t, "e2eha", "10.77.0.0/24")
	c.create("--controlplanes", "3", "--workers", "1")

	s := c.show()
	if len(s.Nodes) != 4 || s.Endpoint != "https://10.77.0.254:6443" || s.VIP != "10.77.0.254" {
		t.Fatalf("cluster show: %+v", s)
	}
	netns, _ := exec.Command("ip", "netns", "list").Output()
	for _, n := range s.Nodes {
		if n.Name == "" || n.Role == "" || n.Address == "" || n.PID == 0 || !strings.Contains(string(netns), n.Netns) {
			t.Fatalf("node %+v incomplete or its namespace is missing from ip netns list:\n%s", n, netns)
		}
	}
	cp1, cp2, cp3, w1 := s.Nodes[0], s.Nodes[1], s.Nodes[2], s.Nodes[3]
	ep1 := "https://" + cp1.Address + ":2379"
	nodes := []string{"--control-plane-nodes", cp1.Address + "," + cp2.Address + "," + cp3.Address, "--worker-nodes", w1.Address}

	// Stock etcdctl agrees: three started voting members.
	members := c.memberList(ep1)
	if len(members) != 3 {
		t.Fatalf("etcdctl lists %d members, want 3: %+v", len(members), members)
	}
	for _, m := range members {
		if m.IsLearner || m.Name == "" {
			t.Fatalf("member not started and voting: %+v", m)
		}
	}

	// The worker got its machine-API certificate from a control plane.
	r := c.must("-n", w1.Address, "version")
	if !strings.Contains(r.stdout, "configured") {
		t.Fatalf("worker does not answer mTLS as a configured node:\n%s", r)
	}
	// The build's commit time orders upgrade bundles: the node reports it.
	if !regexp.MustCompile(`committed \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`).MatchString(r.stdout) {
		t.Fatalf("nodectl version shows no commit time:\n%s", r)
	}

	// Live apply: each live field is changed with apply-config --mode
	// no-reboot and observed taking effect in the running node.
	var scheduled time.Time
	t.Run("live: snapshot schedule", func(t *testing.T) {
		c := c.on(t)
		pid := agentPID(t, cp1.StateDir)
		c.liveApply(t, cp1.Address, `{"cluster":{"etcd":{"snapshots":{"interval":"1m","keep":1}}}}`)
		scheduled = time.Now()
		if got := agentPID(t, cp1.StateDir); got != pid {
			t.Fatalf("machined restarted (pid %d, was %d)", got, pid)
		}
		// The snapshots are counted at the end of the test, which runs
		// for more than two intervals.
	})
	t.Run("live: machine.certSANs", func(t *testing.T) {
		testLiveCertNames(t, c.on(t), cp2.StateDir, cp2.Address, `{"machine":{"certSANs":["api-live.example.internal"]}}`, "api-live.example.internal")
	})
	t.Run("live: a worker's hostname", func(t *testing.T) {
		testLiveCertNames(t, c.on(t), w1.StateDir, w1.Address, `{"machine":{"network":{"hostname":"e2eha-w1-renamed"}}}`, "e2eha-w1-renamed")
	})

	t.Run("a worker token cannot mint a control plane's identity", func(t *testing.T) {
		c := c.on(t)
		testWorkerImpersonation(t, c, cp1.Address, "10.77.0.1")
	})

	t.Run("kill -9 keeps writes going and the node rejoins", func(t *testing.T) {
		c := c.on(t)
		killNode(t, pidOf(t, cp3.StateDir))
		for i := range 20 {
			if out, err := c.etcdctl(ep1, "put", fmt.Sprintf("during-outage-%d", i), "v"); err != nil {
				t.Fatalf("write %d with one member down: %v\n%s", i, err, out)
			}
		}
		// Quorum guard: with cp3 down, removing cp2 would leave 1 of 2.
		var cp2ID uint64
		for _, m := range c.memberList(ep1) {
			if m.Name == "e2eha-cp2" {
				cp2ID = m.ID
			}
		}
		r := c.nodectl("-n", cp1.Address, "etcd", "remove-member", fmt.Sprintf("%x", cp2ID))
		if r.code == 0 || !strings.Contains(r.stderr, "quorum") {
			t.Fatalf("quorum guard did not refuse:\n%s", r)
		}
		if n := len(c.memberList(ep1)); n != 3 {
			t.Fatalf("refused removal changed membership: %d members", n)
		}
		c.startNode(cp3.Netns, cp3.StateDir, cp3.Address)
		c.health(nodes...)
	})

	t.Run("graceful leave and rejoin", func(t *testing.T) {
		c := c.on(t)
		c.must("-n", cp3.Address, "etcd", "leave")
		if n := len(c.memberList(ep1)); n != 2 {
			t.Fatalf("after leave: %d members, want 2", n)
		}
		c.must("-n", cp3.Address, "reboot")
		c.health(nodes...)
		if n := len(c.memberList(ep1)); n != 3 {
			t.Fatalf("after rejoin: %d members, want 3", n)
		}
	})

	// Reproducer: a member removed while running used to be restarted from
	// its stale data, which made embedded etcd panic and took machined down.
	t.Run("member removed by another node stays out and rejoins after reboot", func(t *testing.T) {
		c := c.on(t)
		var id uint64
		for _, m := range c.memberList(ep1) {
			if m.Name == "e2eha-cp3" {
				id = m.ID
			}
		}
		c.must("-n", cp1.Address, "etcd", "remove-member", fmt.Sprintf("%x", id))
		waitFor(t, "cp3's etcd to report it was removed", 30*time.Second, func() error {
			r := c.nodectl("-n", cp3.Address, "service", "etcd")
			// Still running, never restarted: the removal was handled, not crashed on.
			if !strings.Contains(r.stdout, "Running") || !regexp.MustCompile(`RESTARTS\s+0\b`).MatchString(r.stdout) {
				return errors.New(r.String())
			}
			if r := c.nodectl("-n", cp3.Address, "etcd", "status"); r.code == 0 {
				return errors.New("etcd still serves on cp3")
			}
			return nil
		})
		if n := len(c.memberList(ep1)); n != 2 {
			t.Fatalf("%d members after removal, want 2", n)
		}
		c.must("-n", cp3.Address, "version") // machined survived
		// Reproducer: the etcd service used to hang after the removal
		// (its background duties were waited for before being cancelled):
		// it never reached the idle state that says the node left, and
		// every later request timed out as "busy or not running".
		waitFor(t, "cp3's etcd service to say it left the cluster", 30*time.Second, func() error {
			r := c.nodectl("-n", cp3.Address, "service", "etcd")
			if !strings.Contains(r.stdout, "left the cluster") {
				return errors.New(r.String())
			}
			return nil
		})
		c.must("-n", cp3.Address, "reboot")
		c.health(nodes...)
		if n := len(c.memberList(ep1)); n != 3 {
			t.Fatalf("%d members after reboot, want 3", n)
		}
	})

	t.Run("stale learner is cleaned up", func(t *testing.T) {
		c := c.on(t)
		c.must("-n", cp3.Address, "reset")
		waitFor(t, "cp3 in maintenance mode", 60*time.Second, func() error {
			if r := c.nodectl("version", "--insecure", "-n", cp3.Address); !strings.Contains(r.stdout, "maintenance") {
				return errors.New(r.String())
			}
			return nil
		})
		// An earlier join that died after being added leaves this behind.
		if out, err := c.etcdctl(ep1, "member", "add", "e2eha-cp3", "--learner", "--peer-urls", "https://"+cp3.Address+":2380"); err != nil {
			t.Fatalf("add stale learner: %v\n%s", err, out)
		}
		// The node comes back knowing no reachable control plane: its
		// endpoint answers nowhere and it has no peers, so it waits.
		cfg := c.root + "/e2eha/controlplane.yaml"
		lost := `{"machine":{"network":{"hostname":"e2eha-cp3"}},"cluster":{"controlPlane":{"endpoint":"https://10.77.0.250:6443"},"etcd":{"peers":null}}}`
		c.must("apply-config", "--insecure", "-n", cp3.Address, "--file", cfg, "--config-patch", lost)
		waitFor(t, "cp3 to report it found no cluster", 30*time.Second, func() error {
			r := c.nodectl("-n", cp3.Address, "service", "etcd")
			if !strings.Contains(r.stdout, "no etcd cluster found") {
				return errors.New(r.String())
			}
			return nil
		})
		// Live: the peers list reaches the join loop without a restart.
		pid := agentPID(t, cp3.StateDir)
		c.liveApply(t, cp3.Address, `{"cluster":{"etcd":{"peers":["`+cp1.Address+`"]}}}`)
		c.health(nodes...)
		if got := agentPID(t, cp3.StateDir); got != pid {
			t.Fatalf("machined restarted (pid %d, was %d): peers were not applied live", got, pid)
		}
		ms := c.memberList(ep1)
		if len(ms) != 3 {
			t.Fatalf("%d members, want 3: %+v", len(ms), ms)
		}
		for _, m := range ms {
			if m.IsLearner {
				t.Fatalf("a learner remains: %+v", m)
			}
		}
	})

	t.Run("address and hostname change keep membership", func(t *testing.T) {
		c := c.on(t)
		// Rename the node (applied live; the etcd member name follows at the
		// next start), then move it: the member is found by its recorded ID.
		c.must("-n", cp3.Address, "apply-config", "--file", c.root+"/e2eha/controlplane.yaml",
			"--config-patch", `{"machine":{"network":{"hostname":"e2eha-cp3-renamed"}}}`)
		killNode(t, pidOf(t, cp3.StateDir))
		const newAddr = "10.77.0.14"
		for _, args := range [][]string{
			{"-n", cp3.Netns, "addr", "del", cp3.Address + "/24", "dev", "eth0"},
			{"-n", cp3.Netns, "addr", "add", newAddr + "/24", "dev", "eth0"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %v: %v %s", args, err, out)
			}
		}
		c.startNode(cp3.Netns, cp3.StateDir, newAddr)
		c.health("--control-plane-nodes", cp1.Address+","+cp2.Address+","+newAddr, "--worker-nodes", w1.Address)
		ms := c.memberList(ep1)
		var found bool
		for _, m := range ms {
			if m.Name == "e2eha-cp3-renamed" {
				found = len(m.PeerURLs) == 1 && m.PeerURLs[0] == "https://"+newAddr+":2380"
			}
		}
		if !found || len(ms) != 3 {
			t.Fatalf("cp3 not kept as a member under its new name and address: %+v", ms)
		}
	})

	// cp1 was given a 1m schedule keeping 2 at the start, live: by now at
	// least three were taken and only the newest two are kept.
	t.Run("live snapshot schedule: written and pruned", func(t *testing.T) {
		waitFor(t, "two scheduled snapshots on cp1", time.Until(scheduled.Add(3*time.Minute)), func() error {
			n, files, err := snapshotsWritten(cp1.StateDir)
			if err != nil {
				return err
			}
			if n < 2 {
				return fmt.Errorf("%d snapshots written so far (%v)", n, files)
			}
			if len(files) != 1 {
				return fmt.Errorf("%d snapshots written, %d kept (%v), want 1 kept", n, len(files), files)
			}
			return nil
		})
	})
}

// TestSnapshotRecover takes a snapshot, destroys the cluster, recovers it on
// a new one whose other nodes join unaided, then recovers again over a
// running cluster: the nodes holding the replaced cluster's data wipe it
// and rejoin by themselves.
func TestSnapshotRecover(t *testing.T) {
	requireRoot(t)
	snap := t.TempDir() + "/etcd.snapshot"
	c := newLocalCluster(t, "e2esnap", "10.78.0.0/24")
	c.create("--controlplanes", "3", "--workers", "0")
	ep := "https://10.78.0.2:2379"
	want := map[string]string{}
	for i := range 10 {
		k, v := fmt.Sprintf("key-%02d", i), fmt.Sprintf("value-%d", i)
		want[k] = v
		if out, err := c.etcdctl(ep, "put", k, v); err != nil {
			t.Fatalf("put: %v %s", err, out)
		}
	}
	// A backup-only identity may take the snapshot.
	backup := t.TempDir() + "/backup"
	c.must("gen", "nodeconfig", "--with-secrets", c.root+"/e2esnap/secrets.yaml", "--roles", "os:etcd:backup", "--output", backup, "-e", "10.78.0.2")
	c.must("--nodeconfig", backup, "-n", "10.78.0.2", "etcd", "snapshot", snap)
	c.destroy()

	c2 := newLocalCluster(t, "e2esnap2", "10.79.0.0/24")
	c2.create("--controlplanes", "3", "--workers", "0", "--skip-bootstrap")
	c2.must("-n", "10.79.0.2", "bootstrap", "--recover-from", snap)
	c2.health()
	ep2 := "https://10.79.0.4:2379"
	checkKeys(t, c2, ep2, want)

	// Recover again over a healthy cluster: refused without --force.
	if out, err := c2.etcdctl(ep2, "put", "newer", "x"); err != nil {
		t.Fatalf("put: %v %s", err, out)
	}
	if r := c2.nodectl("-n", "10.79.0.2", "bootstrap", "--recover-from", snap); r.code == 0 {
		t.Fatalf("recovery over a healthy cluster was not refused:\n%s", r)
	}
	c2.must("-n", "10.79.0.2", "bootstrap", "--recover-from", snap, "--force")
	c2.health()
	if n := len(c2.memberList(ep2)); n != 3 {
		t.Fatalf("%d members after recovery, want 3", n)
	}
	checkKeys(t, c2, ep2, want)
	if out, _ := c2.etcdctl(ep2, "get", "newer"); strings.Contains(out, "newer") {
		t.Fatalf("a key written after the snapshot survived recovery: %s", out)
	}
}

func checkKeys(t *testing.T, c *localCluster, ep string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		out, err := c.etcdctl(ep, "get", k, "--print-value-only")
		if err != nil || strings.TrimSpace(out) != v {
			t.Fatalf("key %s = %q (%v), want %q", k, out, err, v)
		}
	}
}
