package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ballast-os/ballast/pkg/pki"
)

// TestChaos puts a 3-control-plane cluster through faults aimed at
// Ballast's own membership logic (joins, promotion, peer URLs, quorum
// handling) while a writer records every write etcd acknowledged. After
// each fault the cluster must turn healthy by itself; at the end every
// acknowledged write is present on every member, and no member that was
// not reset lost its data.
func TestChaos(t *testing.T) {
	requireRoot(t)
	c := newLocalCluster(t, "e2echaos", "10.80.0.0/24")
	c.create("--controlplanes", "3", "--workers", "0")
	s := c.show()
	cp1, cp2, cp3 := s.Nodes[0], s.Nodes[1], s.Nodes[2]
	addrs := map[string]string{cp1.Name: cp1.Address, cp2.Name: cp2.Address, cp3.Name: cp3.Address}
	health := func() {
		t.Helper()
		c.health("--control-plane-nodes", addrs[cp1.Name]+","+addrs[cp2.Name]+","+addrs[cp3.Name])
	}
	idsAtStart := c.memberIDs("https://" + cp1.Address + ":2379")

	w := startWriter(t, c, []string{cp1.Address, cp2.Address, cp3.Address})
	defer w.stop()

	// rejoinCP3 resets cp3 and applies its config again; before is called
	// once the new join is under way (at the moment given by the log line
	// cp3 prints), and returns what it did.
	rejoinCP3 := func(t *testing.T, logLine string, fault func() string) string {
		c.must("-n", addrs[cp3.Name], "reset")
		waitFor(t, "cp3 in maintenance mode", 60*time.Second, func() error {
			if r := c.nodectl("version", "--insecure", "-n", addrs[cp3.Name]); !strings.Contains(r.stdout, "maintenance") {
				return errors.New(r.String())
			}
			return nil
		})
		seen := logCount(cp3.StateDir, logLine)
		c.must("apply-config", "--insecure", "-n", addrs[cp3.Name], "--file", c.root+"/e2echaos/controlplane.yaml",
			"--config-patch", `{"machine":{"network":{"hostname":"e2echaos-cp3"}}}`)
		// Poll the log briskly: a learner catches up in tens of milliseconds.
		deadline := time.Now().Add(60 * time.Second)
		for logCount(cp3.StateDir, logLine) <= seen {
			if time.Now().After(deadline) {
				t.Fatalf("cp3 never logged %q", logLine)
			}
			time.Sleep(2 * time.Millisecond)
		}
		return fault()
	}
	killAndRestart := func(t *testing.T, n clusterNode, pause time.Duration) {
		killNode(t, pidOf(t, n.StateDir))
		time.Sleep(pause)
		c.startNode(n.Netns, n.StateDir, addrs[n.Name])
	}

	moves := 0
	rounds := []struct {
		name  string
		fault func(t *testing.T) string
	}{
		{"kill -9 during a learner's catch-up", func(t *testing.T) string {
			promoted := logCount(cp3.StateDir, "promoted to voting etcd member")
			return rejoinCP3(t, "added as etcd learner", func() string {
				killNode(t, pidOf(t, cp3.StateDir))
				when := "before its join promoted it"
				if logCount(cp3.StateDir, "promoted to voting etcd member") > promoted {
					when = "just after its promotion (the kill came late)"
				}
				time.Sleep(time.Second)
				c.startNode(cp3.Netns, cp3.StateDir, addrs[cp3.Name])
				return "cp3 killed right after it was added as a learner, " + when
			})
		}},
		{"kill -9 right after a promotion", func(t *testing.T) string {
			return rejoinCP3(t, "promoted to voting etcd member", func() string {
				killAndRestart(t, cp3, time.Second)
				return "cp3 killed right after its promotion"
			})
		}},
		{"kill -9 of the leader", func(t *testing.T) string {
			leader := c.leader(s.Nodes[:3], addrs)
			killAndRestart(t, leader, 2*time.Second)
			return leader.Name + " (the leader) killed and restarted after 2s"
		}},
		{"two of three at once (quorum loss), then both back", func(t *testing.T) string {
			killNode(t, pidOf(t, cp2.StateDir))
			killNode(t, pidOf(t, cp3.StateDir))
			time.Sleep(5 * time.Second)
			c.startNode(cp2.Netns, cp2.StateDir, addrs[cp2.Name])
			c.startNode(cp3.Netns, cp3.StateDir, addrs[cp3.Name])
			return "cp2 and cp3 killed, 5s without quorum, both restarted"
		}},
		{"partition during a join", func(t *testing.T) string {
			return rejoinCP3(t, "joining the cluster through", func() string {
				// On the host's side: machined keeps its own links up.
				c.ip(t, "link", "set", cp3.Veth, "down")
				time.Sleep(5 * time.Second)
				c.ip(t, "link", "set", cp3.Veth, "up")
				return "cp3's link down for 5s as its join began"
			})
		}},
		{"address change while another node is down", func(t *testing.T) string {
			killNode(t, pidOf(t, cp2.StateDir))
			killNode(t, pidOf(t, cp3.StateDir))
			moves++
			newAddr := fmt.Sprintf("10.80.0.%d", 23+moves)
			c.ip(t, "-n", cp3.Netns, "addr", "del", addrs[cp3.Name]+"/24", "dev", "eth0")
			c.ip(t, "-n", cp3.Netns, "addr", "add", newAddr+"/24", "dev", "eth0")
			addrs[cp3.Name] = newAddr
			c.startNode(cp3.Netns, cp3.StateDir, newAddr)
			time.Sleep(5 * time.Second)
			c.startNode(cp2.Netns, cp2.StateDir, addrs[cp2.Name])
			return "cp3 moved to " + newAddr + " while cp2 was down (no quorum to record it), then cp2 restarted"
		}},
	}
	// Every fault runs twice (BALLAST_CHAOS_PASSES changes it): the kill of
	// a learner lands at a different point of its catch-up each time.
	passes := 2
	if v, err := strconv.Atoi(os.Getenv("BALLAST_CHAOS_PASSES")); err == nil && v > 0 {
		passes = v
	}
	var all []struct {
		name  string
		fault func(t *testing.T) string
	}
	for p := 1; p <= passes; p++ {
		for _, r := range rounds {
			r.name = fmt.Sprintf("pass %d: %s", p, r.name)
			all = append(all, r)
		}
	}
	rounds = all
	for i, r := range rounds {
		ok := t.Run(r.name, func(t *testing.T) {
			acked, failed := w.counts()
			start := time.Now()
			what := r.fault(t)
			faulted := time.Since(start)
			health()
			a2, f2 := w.counts()
			t.Logf("round %d/%d %q: %s; healthy %s after the fault; writes acknowledged %d, failed %d during the round",
				i+1, len(rounds), r.name, what, (time.Since(start) - faulted).Round(100*time.Millisecond), a2-acked, f2-failed)
		})
		if !ok {
			t.FailNow()
		}
	}

	// A last write must succeed: the cluster serves again.
	w.stop()
	acked, failed := w.counts()
	if acked == 0 {
		t.Fatal("the writer had no write acknowledged")
	}
	for _, n := range s.Nodes[:3] {
		missing := c.missingKeys(addrs[n.Name], w.acknowledged())
		if len(missing) > 0 {
			t.Errorf("%s lacks %d of %d acknowledged writes (first: %v)", n.Name, len(missing), acked, missing[:min(5, len(missing))])
		}
	}
	// cp1 and cp2 were never reset: their data must never have been wiped,
	// and they must still be the members they were at the start.
	for _, n := range []clusterNode{cp1, cp2} {
		if k := logCount(n.StateDir, "etcd data wiped"); k != 0 {
			t.Errorf("%s wiped its etcd data %d times without being reset", n.Name, k)
		}
	}
	idsAtEnd := c.memberIDs("https://" + addrs[cp1.Name] + ":2379")
	for _, n := range []clusterNode{cp1, cp2} {
		name := c.name + "-" + n.Name
		if idsAtStart[name] == 0 || idsAtStart[name] != idsAtEnd[name] {
			t.Errorf("member %s changed from %x to %x: its membership was lost", name, idsAtStart[name], idsAtEnd[name])
		}
	}
	t.Logf("chaos: %d rounds; %d writes acknowledged (all present on every member), %d failed or unacknowledged during faults", len(rounds), acked, failed)
}

// logCount counts the lines of a node's machined log containing substr.
func logCount(stateDir, substr string) int {
	data, _ := os.ReadFile(filepath.Join(stateDir, "machined.log"))
	return strings.Count(string(data), substr)
}

func (c *localCluster) ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v %s", args, err, out)
	}
}

// leader returns the node whose etcd member leads.
func (c *localCluster) leader(nodes []clusterNode, addrs map[string]string) clusterNode {
	c.t.Helper()
	for _, n := range nodes {
		r := c.nodectl("-n", addrs[n.Name], "etcd", "status", "-o", "json")
		var out []struct {
			Result struct {
				MemberID string `json:"memberId"`
				Leader   string `json:"leader"`
			} `json:"result"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || len(out) != 1 {
			continue
		}
		if st := out[0].Result; st.MemberID != "" && st.MemberID == st.Leader {
			return n
		}
	}
	c.t.Fatal("no node reports itself as the etcd leader")
	return clusterNode{}
}

// memberIDs maps member names to IDs, from etcdctl.
func (c *localCluster) memberIDs(endpoint string) map[string]uint64 {
	out := map[string]uint64{}
	for _, m := range c.memberList(endpoint) {
		out[m.Name] = m.ID
	}
	return out
}

// missingKeys returns the keys of want that node's member does not serve
// (a serializable read: the member's own data).
func (c *localCluster) missingKeys(node string, want []string) []string {
	c.t.Helper()
	cli := c.etcdClient([]string{node})
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/chaos/", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSerializable())
	if err != nil {
		c.t.Fatalf("read %s: %v", node, err)
	}
	have := map[string]bool{}
	for _, kv := range resp.Kvs {
		have[string(kv.Key)] = true
	}
	var missing []string
	for _, k := range want {
		if !have[k] {
			missing = append(missing, k)
		}
	}
	return missing
}

// etcdClient is a Go etcd client with the certificate from
// `nodectl etcd client-cert`.
func (c *localCluster) etcdClient(nodes []string) *clientv3.Client {
	c.t.Helper()
	if _, err := os.Stat(filepath.Join(c.etcdPKI, "client.key")); err != nil {
		c.must("-n", nodes[0], "etcd", "client-cert", "--output-dir", c.etcdPKI)
	}
	return newEtcdClient(c.t, c.etcdPKI, nodes)
}

// newEtcdClient connects to nodes' etcd with the files `nodectl etcd
// client-cert` wrote into pkiDir.
func newEtcdClient(t *testing.T, pkiDir string, nodes []string) *clientv3.Client {
	t.Helper()
	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join(pkiDir, n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cert, err := tls.X509KeyPair(read("client.crt"), read("client.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pki.Pool(read("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, n := range nodes {
		eps = append(eps, "https://"+n+":2379")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: eps, DialTimeout: 3 * time.Second, Logger: zap.NewNop(), // retries during faults are expected
		// Follow the membership, so the writer keeps writing after a node
		// moved to another address.
		AutoSyncInterval: time.Second,
		TLS:              &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// writer puts sequential keys and records those etcd acknowledged.
type writer struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	acked  []string
	failed int
}

func startWriter(t *testing.T, c *localCluster, nodes []string) *writer {
	cli := c.etcdClient(nodes)
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer cli.Close()
		for i := 0; ctx.Err() == nil; i++ {
			key := fmt.Sprintf("/chaos/%07d", i)
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := cli.Put(wctx, key, "v")
			wcancel()
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, key)
			} else {
				w.failed++ // unknown outcome: it may or may not be there
			}
			w.mu.Unlock()
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}()
	return w
}

func (w *writer) stop() {
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
	}
}

func (w *writer) counts() (acked, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked), w.failed
}

func (w *writer) acknowledged() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.acked...)
}
