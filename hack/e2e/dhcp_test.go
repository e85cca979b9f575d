package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDHCPWithDnsmasq hands machined (container mode, in a namespace of its
// own) a DHCP lease from Debian's dnsmasq running in another namespace:
// the node takes the address, route and resolver, renews the lease at the
// server's T1, and when dnsmasq is gone past the lease it keeps trying and
// says so. The node's machine API is on a second, static link.
func TestDHCPWithDnsmasq(t *testing.T) {
	requireRoot(t)
	dnsmasq, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Fatalf("dnsmasq is not installed (hack/install-deps.sh test): %v", err)
	}
	const (
		srvNS, nodeNS = "ballast-e2e-dhcpsrv", "ballast-e2e-dhcpnode"
		mgmtHost      = "bdhcp-mgmt" // host side of the node's management link
		api           = "10.76.0.2"
	)
	extraNamespace(t, srvNS)
	nodeNamespace(t, nodeNS, mgmtHost, "10.76.0.1", api)
	// DHCP link: dhcp0 (server, 10.77.0.1/24) <-> eth1 (node, no address).
	mustRun(t, "ip", "link", "add", "dhcp0", "netns", srvNS, "type", "veth", "peer", "name", "eth1", "netns", nodeNS)
	mustRun(t, "ip", "-n", srvNS, "addr", "add", "10.77.0.1/24", "dev", "dhcp0")
	mustRun(t, "ip", "-n", srvNS, "link", "set", "dhcp0", "up")

	// dnsmasq's shortest lease is 2 minutes; T1/T2 make the renewal early.
	leases := filepath.Join(t.TempDir(), "dnsmasq.leases")
	var srv *exec.Cmd
	var srvLog syncBuffer
	startServer := func() {
		srv = exec.Command("nsenter", "--net=/run/netns/"+srvNS, dnsmasq, "--keep-in-foreground", "--no-resolv", "--no-hosts",
			"--port=0", "--interface=dhcp0", "--bind-interfaces", "--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,2m",
			"--dhcp-option=option:router,10.77.0.1", "--dhcp-option=option:dns-server,10.77.0.53",
			"--dhcp-option=option:T1,10s", "--dhcp-option=option:T2,20s",
			"--dhcp-leasefile="+leases, "--pid-file=", "--log-dhcp", "--log-facility=-")
		srv.Stdout, srv.Stderr = &srvLog, &srvLog
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
	}
	stopServer := func() {
		if srv != nil && srv.Process != nil {
			_ = srv.Process.Kill()
			_ = srv.Wait()
			srv = nil
		}
	}
	startServer()
	t.Cleanup(stopServer)

	dir := genConfig(t, "dhcp", "https://"+api+":6443")
	nc := filepath.Join(dir, "nodeconfig")
	m := startMachinedIn(t, nodeNS, t.TempDir(), api+":50000")
	mustNodectl(t, "apply-config", "--insecure", "-n", api, "--cert-fingerprint", m.fingerprint(),
		"--file", filepath.Join(dir, "controlplane.yaml"),
		"--config-patch", `{"machine":{"network":{"interfaces":[{"interface":"eth1","dhcp":true}]}}}`)
	ctl := func(args ...string) run {
		t.Helper()
		return mustNodectl(t, append([]string{"--nodeconfig", nc, "-n", api}, args...)...)
	}
	lease := func() (addr, state string, renewAt time.Time) {
		var res []struct {
			Result struct {
				Leases []struct {
					Address string    `json:"address"`
					State   string    `json:"state"`
					RenewAt time.Time `json:"renewAt"`
				} `json:"leases"`
			} `json:"result"`
		}
		out := ctl("get", "leases", "-o", "json").stdout
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
			t.Fatalf("get leases -o json: %v\n%s", err, out)
		}
		for _, l := range res[0].Result.Leases {
			return l.Address, l.State, l.RenewAt
		}
		return "", "", time.Time{}
	}

	var leased string
	var firstRenew time.Time
	waitFor(t, "a lease from dnsmasq", 60*time.Second, func() error {
		addr, state, renew := lease()
		if state != "bound" || !strings.HasPrefix(addr, "10.77.0.") {
			return fmt.Errorf("lease %q %s", addr, state)
		}
		leased, firstRenew = addr, renew
		return nil
	})
	t.Logf("leased %s", leased)
	if out := ctl("get", "addresses").stdout; !strings.Contains(out, leased) || !strings.Contains(out, "dhcp") {
		t.Fatalf("get addresses does not show the DHCP address %s:\n%s", leased, out)
	}
	if out := ctl("get", "routes").stdout; !strings.Contains(out, "default") || !strings.Contains(out, "10.77.0.1") {
		t.Fatalf("get routes lacks the default route via the DHCP router:\n%s", out)
	}
	if out := ctl("get", "resolvers").stdout; !strings.Contains(out, "10.77.0.53") || !strings.Contains(out, "dhcp") {
		t.Fatalf("get resolvers lacks the DHCP DNS server:\n%s", out)
	}

	// Renewal at T1 (10 s): a later renew time, same address, still bound.
	waitFor(t, "the lease renewed", 60*time.Second, func() error {
		addr, state, renew := lease()
		if addr != leased || state != "bound" || !renew.After(firstRenew) {
			return fmt.Errorf("lease %s %s renew at %s (first %s)", addr, state, renew, firstRenew)
		}
		return nil
	})
	if logs := ctl("logs", "network").stdout; !strings.Contains(logs, "renewed "+leased) {
		t.Fatalf("network log does not show the renewal:\n%s", logs)
	}

	// dnsmasq gone past the lease (2 min): the address is dropped, and the
	// node keeps trying and logs it.
	stopServer()
	waitFor(t, "renewal failures logged", 60*time.Second, func() error {
		if logs := ctl("logs", "network").stdout; !strings.Contains(logs, "failed") {
			return errors.New("no failure logged yet")
		}
		return nil
	})
	waitFor(t, "the lease expired and the node discovering again", 150*time.Second, func() error {
		logs := ctl("logs", "network").stdout
		if !strings.Contains(logs, "expired; discovering again") || !strings.Contains(logs, "no lease") {
			return errors.New("not yet")
		}
		return nil
	})
	if out := ctl("get", "addresses").stdout; strings.Contains(out, leased) {
		t.Fatalf("the expired address %s is still there:\n%s", leased, out)
	}
	// Back: a new lease.
	startServer()
	waitFor(t, "a lease again once dnsmasq is back", 90*time.Second, func() error {
		if addr, state, _ := lease(); state != "bound" || addr == "" {
			return fmt.Errorf("lease %q %s", addr, state)
		}
		return nil
	})

	// machine.network is live: a static address and MTU added by
	// apply-config --mode no-reboot appear, and go again when removed.
	c := &localCluster{t: t, nodeconfig: nc}
	c.liveApply(t, api, `{"machine":{"network":{"interfaces":[{"interface":"eth1","dhcp":true,"mtu":1400,"addresses":["10.77.1.5/24"]}]}}}`)
	waitFor(t, "the static address and MTU applied live", 30*time.Second, func() error {
		addrs, links := ctl("get", "addresses").stdout, ctl("get", "links").stdout
		if !strings.Contains(addrs, "10.77.1.5/24") || !strings.Contains(addrs, "static") || !strings.Contains(links, "1400") {
			return fmt.Errorf("addresses:\n%s\nlinks:\n%s", addrs, links)
		}
		return nil
	})
	c.liveApply(t, api, `{"machine":{"network":{"interfaces":[{"interface":"eth1","dhcp":true,"mtu":1400}]}}}`)
	waitFor(t, "the static address removed live", 30*time.Second, func() error {
		if addrs := ctl("get", "addresses").stdout; strings.Contains(addrs, "10.77.1.5/24") {
			return fmt.Errorf("still there:\n%s", addrs)
		}
		return nil
	})
	if t.Failed() {
		t.Logf("dnsmasq:\n%s", srvLog.String())
	}
}
