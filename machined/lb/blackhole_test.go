package lb

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/hack/netnstest"
)

// TestBlackHoledUpstream: the preferred upstream starts dropping packets
// (nftables in its namespace: no RST, no ICMP — a dead host or a partition,
// not a refused connection). New connections go to the other upstream
// within the dial timeout, and the dropped one is marked down. Root: it
// makes a namespace and a veth pair, removed at the end.
func TestBlackHoledUpstream(t *testing.T) {
	netnstest.RequireRoot(t, "it needs a network namespace and nftables")
	ns := fmt.Sprintf("ballast-lbt-%d", os.Getpid())
	host := fmt.Sprintf("blbt%d", os.Getpid()%100000)
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	cleanup := func() {
		_ = exec.Command("ip", "netns", "del", ns).Run()
		_ = exec.Command("ip", "link", "del", host).Run()
	}
	cleanup()
	t.Cleanup(cleanup)
	sh("ip", "netns", "add", ns)
	sh("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
	sh("ip", "addr", "add", "10.66.0.1/24", "dev", host)
	sh("ip", "link", "set", host, "up")
	sh("ip", "-n", ns, "addr", "add", "10.66.0.2/24", "dev", "eth0")
	sh("ip", "-n", ns, "addr", "add", "10.66.0.3/24", "dev", "eth0")
	sh("ip", "-n", ns, "link", "set", "eth0", "up")
	sh("ip", "-n", ns, "link", "set", "lo", "up")
	var servers []*upstreamServer
	for _, u := range []struct{ addr, name string }{{"10.66.0.2:6443", "a"}, {"10.66.0.3:6443", "b"}} {
		ln, err := netnstest.ListenIn(ns, u.addr)
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, serveUpstream(t, ln, u.name))
	}
	b, addr := startBalancer(t, []string{"10.66.0.2:6443", "10.66.0.3:6443"})
	if _, _, err := through(t, addr); err != nil {
		t.Fatal(err)
	}
	victim, other := servers[0], servers[1]
	if b.Upstreams()[0].Addr == "10.66.0.3:6443" {
		victim, other = servers[1], servers[0]
	}
	vip := strings.Split(victim.ln.Addr().String(), ":")[0]
	rules := "table inet blackhole {\n chain in {\n  type filter hook input priority 0;\n  ip daddr " + vip + " tcp dport 6443 drop\n }\n}\n"
	nft := exec.Command("nsenter", "--net=/run/netns/"+ns, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(rules)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	dropped := time.Now()
	servedByOther(t, addr, other.name, 10)
	t.Logf("black-holed upstream marked down %s after the drop rule", waitMarkedDown(t, b, victim.ln.Addr().String(), dropped).Round(time.Millisecond))
}
