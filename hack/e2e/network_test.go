package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNetworkLevelTriggered runs machined (container mode) in a namespace of
// its own and checks that its network controller reconciles the state, not
// just config changes: a NIC that appears after the config was applied gets
// its address (the latency is logged); an address removed behind its back
// comes back at the resync; a static route dropped from the config
// disappears, as do the addresses of an interface dropped from it.
func TestNetworkLevelTriggered(t *testing.T) {
	requireRoot(t)
	const (
		nodeNS   = "ballast-e2e-netlt"
		mgmtHost = "bnetlt-mgmt"
		lateHost = "bnetlt-late"
		api      = "10.74.0.2"
	)
	nodeNamespace(t, nodeNS, mgmtHost, "10.74.0.1", api)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", lateHost).Run() })
	sh := func(args ...string) string { t.Helper(); return mustRun(t, args...) }

	dir := genConfig(t, "netlt", "https://"+api+":6443")
	nc := filepath.Join(dir, "nodeconfig")
	m := startMachinedIn(t, nodeNS, t.TempDir(), api+":50000")
	// eth1 does not exist yet.
	mustNodectl(t, "apply-config", "--insecure", "-n", api, "--cert-fingerprint", m.fingerprint(),
		"--file", filepath.Join(dir, "controlplane.yaml"),
		"--config-patch", `{"machine":{"network":{"interfaces":[`+
			`{"interface":"eth0","addresses":["`+api+`/24"],"routes":[{"network":"10.73.0.0/24","gateway":"10.74.0.1"},{"network":"10.72.0.0/24","gateway":"10.74.0.1"}]},`+
			`{"interface":"eth1","addresses":["10.71.0.2/24"]}]}}}`)
	routes := func() string { return sh("ip", "-n", nodeNS, "route", "show", "proto", "static") }
	addrs := func(dev string) string {
		out, _ := exec.Command("ip", "-n", nodeNS, "-4", "-o", "addr", "show", "dev", dev).CombinedOutput()
		return string(out)
	}
	waitFor(t, "the static routes", 30*time.Second, func() error {
		if r := routes(); !strings.Contains(r, "10.73.0.0/24") || !strings.Contains(r, "10.72.0.0/24") {
			return fmt.Errorf("routes:\n%s", r)
		}
		return nil
	})

	t.Run("a NIC that appears later gets its address", func(t *testing.T) {
		sh("ip", "link", "add", lateHost, "type", "veth", "peer", "name", "eth1", "netns", nodeNS)
		added := time.Now()
		var took time.Duration
		waitFor(t, "eth1's address", 30*time.Second, func() error {
			if a := addrs("eth1"); !strings.Contains(a, "10.71.0.2/24") {
				return fmt.Errorf("eth1: %q", a)
			}
			took = time.Since(added)
			return nil
		})
		t.Logf("eth1 appeared; its address was there %s later", took.Round(time.Millisecond))
	})

	t.Run("an address removed behind its back comes back", func(t *testing.T) {
		sh("ip", "-n", nodeNS, "addr", "del", "10.71.0.2/24", "dev", "eth1")
		waitFor(t, "eth1's address again (resync)", 45*time.Second, func() error {
			if a := addrs("eth1"); !strings.Contains(a, "10.71.0.2/24") {
				return fmt.Errorf("eth1: %q", a)
			}
			return nil
		})
	})

	t.Run("a route dropped from the config and an interface dropped go", func(t *testing.T) {
		active := filepath.Join(t.TempDir(), "active.yaml")
		if err := os.WriteFile(active, []byte(mustNodectl(t, "--nodeconfig", nc, "-n", api, "get", "config").stdout), 0o600); err != nil {
			t.Fatal(err)
		}
		mustNodectl(t, "--nodeconfig", nc, "-n", api, "apply-config", "--mode", "no-reboot", "--file", active,
			"--config-patch", `{"machine":{"network":{"interfaces":[{"interface":"eth0","addresses":["`+api+`/24"],"routes":[{"network":"10.73.0.0/24","gateway":"10.74.0.1"}]}]}}}`)
		waitFor(t, "10.72.0.0/24 gone and eth1's address removed", 30*time.Second, func() error {
			if r := routes(); strings.Contains(r, "10.72.0.0/24") || !strings.Contains(r, "10.73.0.0/24") {
				return fmt.Errorf("routes:\n%s", r)
			}
			if a := addrs("eth1"); strings.Contains(a, "10.71.0.2") {
				return fmt.Errorf("eth1 still has %q", a)
			}
			return nil
		})
	})
}
