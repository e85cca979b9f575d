package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/hack/rsyslogtest"
	"github.com/ballast-os/ballast/pkg/cluster"
)

// shippedLine is a record as the nodes send it.
type shippedLine struct {
	Time    string `json:"time"`
	Node    string `json:"node"`
	Service string `json:"service"`
	Level   string `json:"level"`
	Msg     string `json:"msg"`
}

// testLogShipping runs Debian's rsyslogd on the cluster bridge's gateway,
// adds it live as a TCP destination on every node, and waits for JSON
// lines from each node's agent (a service restarted makes it log) and from
// the services (etcd, kube-apiserver or kubelet); then removes it live and
// checks the nodes stop sending.
func testLogShipping(t *testing.T, c *localCluster, nodes []string) {
	st, err := cluster.Load(c.root, c.name)
	if err != nil {
		t.Fatal(err)
	}
	rs := rsyslogtest.New(t, st.Gateway)
	rs.Start()
	add := fmt.Sprintf(`{"machine":{"logging":{"destinations":[{"endpoint":%q,"format":"json_lines"}]}}}`, rs.TCP())
	for _, n := range nodes {
		c.liveApply(t, n, add)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			c.liveApply(t, n, `{"machine":{"logging":null}}`)
		}
	})
	// Lines are shipped from the moment a node follows the destination:
	// once every node's log-ship service says it does, make every agent
	// log (a service restarted).
	for _, n := range nodes {
		waitFor(t, n+" shipping", 30*time.Second, func() error {
			if out := c.must("-n", n, "logs", "log-ship").stdout; !strings.Contains(out, "shipping logs to "+rs.TCP()) {
				return fmt.Errorf("log-ship says: %q", tail(out, 3))
			}
			return nil
		})
		c.must("-n", n, "service", "timesync", "restart")
	}
	start := time.Now()
	var recs []shippedLine
	waitFor(t, "JSON lines from every node's agent, and from services", 90*time.Second, func() error {
		recs = rsyslogtest.Records[shippedLine](rs)
		from := map[string]map[string]bool{}
		for _, r := range recs {
			if r.Time == "" || r.Level == "" {
				return fmt.Errorf("a record without time or level: %+v", r)
			}
			if from[r.Node] == nil {
				from[r.Node] = map[string]bool{}
			}
			from[r.Node][r.Service] = true
		}
		if len(from) < len(nodes) {
			return fmt.Errorf("lines from %d nodes of %d: %v", len(from), len(nodes), keys(from))
		}
		services := map[string]bool{}
		for node, svcs := range from {
			if !svcs["machined"] {
				return fmt.Errorf("%s sent no machined lines yet: %v", node, keys(svcs))
			}
			for s := range svcs {
				services[s] = true
			}
		}
		if !services["etcd"] && !services["kube-apiserver"] && !services["kubelet"] {
			return fmt.Errorf("no etcd, kube-apiserver or kubelet lines yet: %v", keys(services))
		}
		return nil
	})
	t.Logf("%d lines from %d nodes, the last node's %s after its agent was made to log", len(recs), len(nodes), time.Since(start).Round(100*time.Millisecond))

	for _, n := range nodes {
		c.liveApply(t, n, `{"machine":{"logging":null}}`)
	}
	for _, n := range nodes {
		waitFor(t, n+" stopped shipping", 30*time.Second, func() error {
			if out := c.must("-n", n, "logs", "log-ship").stdout; !strings.Contains(out, "stopped shipping logs to "+rs.TCP()) {
				return fmt.Errorf("log-ship says: %q", tail(out, 3))
			}
			return nil
		})
	}
	time.Sleep(time.Second) // what rsyslogd received before may still be written out
	before := len(rsyslogtest.Records[shippedLine](rs))
	// Lines every node logs: a service restarted (its agent logs the
	// state changes).
	for _, n := range nodes {
		c.must("-n", n, "service", "timesync", "restart")
	}
	time.Sleep(3 * time.Second)
	if after := len(rsyslogtest.Records[shippedLine](rs)); after != before {
		t.Fatalf("%d lines arrived after the destination was removed from every node", after-before)
	}
}

func keys[V any](m map[string]V) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return strings.Join(out, ",")
}
