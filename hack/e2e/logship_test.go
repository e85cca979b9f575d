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
// lines from each node's agent and kubelet; then removes it live and
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
	start := time.Now()
	var recs []shippedLine
	waitFor(t, "JSON lines from every node's agent and kubelet", 90*time.Second, func() error {
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
		for node, svcs := range from {
			if !svcs["machined"] || !svcs["kubelet"] {
				return fmt.Errorf("%s sent no machined or kubelet lines yet: %v", node, keys(svcs))
			}
		}
		return nil
	})
	t.Logf("%d lines from %d nodes within %s of the config", len(recs), len(nodes), time.Since(start).Round(100*time.Millisecond))

	for _, n := range nodes {
		c.liveApply(t, n, `{"machine":{"logging":null}}`)
	}
	time.Sleep(3 * time.Second) // lines already queued may still arrive
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
