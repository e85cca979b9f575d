package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testNodeTools asks one node's tools as os:admin and as os:reader: its
// process list is its own agent's tree (its kubelet and containerd, one
// agent of the five the host runs), netstat shows the machine API's listener held by
// machined, memory, mounts and usage answer, read works inside the
// allow-list and not outside it, and a reader may list processes but not
// read files.
func testNodeTools(t *testing.T, c *localCluster, node, cp string) {
	var ps struct {
		Result []struct {
			Node  string `json:"node"`
			Value struct {
				Processes []struct {
					Pid     int      `json:"pid"`
					Command string   `json:"command"`
					Args    []string `json:"args"`
				} `json:"processes"`
			} `json:"result"`
		}
	}
	r := c.must("-n", node, "processes", "-o", "json")
	if err := json.Unmarshal([]byte(`{"Result":`+r.stdout+`}`), &ps); err != nil || len(ps.Result) != 1 {
		t.Fatalf("processes -o json: %v\n%s", err, tail(r.stdout, 20))
	}
	cmds := map[string]int{}
	for _, p := range ps.Result[0].Value.Processes {
		cmds[p.Command]++
	}
	if cmds["machined"] != 1 { // the host runs one agent per node
		t.Fatalf("%s's processes hold %d agents, want its own only: %v", node, cmds["machined"], cmds)
	}
	for _, want := range []string{"machined", "containerd", "kubelet"} {
		if cmds[want] == 0 {
			t.Fatalf("%s's processes lack %s: %v", node, want, cmds)
		}
	}
	t.Logf("%s: %d processes in its tree", node, len(ps.Result[0].Value.Processes))

	ns := c.must("-n", node, "netstat", "--listening").stdout
	if !strings.Contains(ns, ":50000") || !strings.Contains(ns, "machined") {
		t.Fatalf("netstat --listening lacks the machine API held by machined:\n%s", ns)
	}
	for _, cmd := range [][]string{{"memory"}, {"mounts"}, {"usage"}} {
		out := c.must(append([]string{"-n", node}, cmd...)...).stdout
		if len(strings.Split(strings.TrimSpace(out), "\n")) < 2 {
			t.Fatalf("%s shows nothing:\n%s", cmd[0], out)
		}
		if cmd[0] == "usage" && (!strings.Contains(out, "STATE") || !strings.Contains(out, "EPHEMERAL")) {
			t.Fatalf("usage lacks STATE or EPHEMERAL:\n%s", out)
		}
	}
	if out := c.must("-n", node, "read", "/proc/loadavg").stdout; len(strings.Fields(out)) != 5 {
		t.Fatalf("read /proc/loadavg: %q", out)
	}
	if out := c.must("-n", node, "list", "/proc/self").stdout; !strings.Contains(out, "status") {
		t.Fatalf("list /proc/self:\n%s", out)
	}
	for _, path := range []string{"/etc/shadow", "/proc/self/root/etc/shadow", "/proc/1/environ"} {
		if r := c.nodectl("-n", node, "read", path); r.code == 0 || !strings.Contains(r.stderr, "not allowed") {
			t.Fatalf("read %s as os:admin: %s", path, r)
		}
	}

	// os:reader: the tables yes, files no.
	reader := filepath.Join(t.TempDir(), "reader.nodeconfig")
	c.must("gen", "nodeconfig", "--with-secrets", filepath.Join(c.root, c.name, "secrets.yaml"), "--roles", "os:reader",
		"--output", reader, "-e", cp) // endpoints must be control planes
	rc := *c
	rc.nodeconfig = reader
	rc.must("-n", node, "processes")
	if r := rc.nodectl("-n", node, "read", "/proc/loadavg"); r.code == 0 || !strings.Contains(r.stderr, "os:admin, os:operator") {
		t.Fatalf("read as os:reader: %s", r)
	}
	if _, err := os.Stat(reader); err != nil {
		t.Fatal(err)
	}
}
