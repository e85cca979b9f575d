package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/ballast-os/ballast/hack/netnstest"
)

// sectionOrder is the order of the report's sections.
var sectionOrder = []string{"clusters", "etcd", "kubernetes", "nodes", "upgrade", "rollout", "upgrade-k8s", "install", "boot", "vip", "lb"}

var sectionTitle = map[string]string{
	"clusters":    "Local clusters and etcd",
	"etcd":        "Embedded etcd vs stock etcd: formation and puts",
	"kubernetes":  "Kubernetes control plane: cluster create to every apiserver ready, and memory",
	"nodes":       "Nodes and pods: cluster create to every node Ready, pod start, worker failure, worker memory",
	"upgrade":     "Upgrades and rollback (container mode)",
	"rollout":     "Rolling upgrade of a cluster (netns, 3 control planes + 1 worker)",
	"upgrade-k8s": "Kubernetes upgrade of a cluster (netns, 3 control planes + 1 worker)",
	"install":     "Installing a machine to disk and upgrading it in qemu",
	"boot":        "Booting the OS image in qemu: /init, machine API, DHCP lease, sizes",
	"vip":         "Control-plane VIP failover: Ballast vs keepalived",
	"lb":          "API load balancer: Ballast vs haproxy",
}

// merge writes the report: the sections measured now replace their earlier
// text, the others are kept as they were.
func merge(path string, blocks map[string]string) error {
	old, _ := os.ReadFile(path)
	kept := map[string]string{}
	for _, name := range sectionOrder {
		open, end := "<!-- bench:"+name+" -->", "<!-- /bench:"+name+" -->"
		if i := strings.Index(string(old), open); i >= 0 {
			if j := strings.Index(string(old)[i:], end); j >= 0 {
				kept[name] = string(old)[i+len(open) : i+j]
			}
		}
	}
	var b strings.Builder
	b.WriteString("# Benchmarks\n\nMeasured by `make bench` (hack/bench); `go run ./hack/bench -sections vip,lb` measures\nsome sections and keeps the others. These are measurements, not pass/fail criteria.\nThe etcd, VIP and load-balancer sections put stock etcd, the classic recipe's\nkeepalived and haproxy side by side, measured in the same run on the same machine.\n")
	for _, name := range sectionOrder {
		text, ok := blocks[name]
		if !ok {
			if text, ok = kept[name]; !ok {
				continue
			}
		} else {
			text = "\n## " + sectionTitle[name] + "\n\n" + text
		}
		b.WriteString("\n<!-- bench:" + name + " -->" + strings.TrimRight(text, "\n") + "\n<!-- /bench:" + name + " -->\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func stamp() string {
	return fmt.Sprintf("Measured on %s, %d CPUs, %s.", time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), runtime.Version())
}

func ratio(a, b time.Duration) string {
	if a == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", float64(b)/float64(a))
}

func renderVIP(rs []vipResult) string {
	var b strings.Builder
	b.WriteString(stamp() + ` Three nodes on a bridge, each in its own network namespace
with a TCP listener on :6443 that answers with its name. Each round: wait until the
cluster is settled, find the holder, inject the fault, and time from the fault to
the VIP answering TCP from another node (the host connects every 5 ms). A sampler
reads every namespace every 20 ms and counts samples with two nodes carrying the
VIP on an up link.

- **crash**: the holder's cable pulled (the host's side of its veth down)
  and its agent SIGKILLed (power loss);
- **partition**: the holder's cable pulled, the agent alive (back after 2 s);
- **isolation**: all the holder's traffic dropped by nftables, its link up and
  the agent alive (for 2 s after the failover, then restored) — the partition
  an agent cannot see on its link;
- **graceful**: Ballast: ` + "`nodectl reboot`" + ` of the holder; keepalived: SIGTERM (it sends a
  priority-0 advert as it stops, the classic recipe's graceful handover).

Ballast runs with its defaults (TTL 1800 ms, renew every 200 ms); keepalived with
Debian's 2.2.7 defaults and ` + "`advert_int 1`" + `, ` + "`nopreempt`" + `, priorities 100/99/98.

| fault | Ballast p50 | p95 | max | keepalived p50 | p95 | max | keepalived ÷ Ballast (p95) |
| --- | --: | --: | --: | --: | --: | --: | --: |
`)
	if len(rs) == 2 {
		for _, row := range []struct {
			name string
			a, k []time.Duration
		}{
			{"crash", rs[0].crash, rs[1].crash},
			{"partition", rs[0].partition, rs[1].partition},
			{"isolation", rs[0].isolation, rs[1].isolation},
			{"graceful", rs[0].graceful, rs[1].graceful},
		} {
			a50, a95, amx := netnstest.Quantiles(row.a)
			k50, k95, kmx := netnstest.Quantiles(row.k)
			fmt.Fprintf(&b, "| %s (n=%d) | %s | %s | %s | %s | %s | %s | %s |\n", row.name, len(row.a),
				ms(a50), ms(a95), ms(amx), ms(k50), ms(k95), ms(kmx), ratio(a95, k95))
		}
		fmt.Fprintf(&b, "\nSamples with two holders on up links: **Ballast %d** of %d; keepalived %d of %d (%d of them during isolation rounds: split brain)",
			len(rs[0].doubles), rs[0].samples, len(rs[1].doubles), rs[1].samples, rs[1].isolationDoubles)
		if len(rs[1].doubles) > 0 {
			fmt.Fprintf(&b, " (e.g. %s)", rs[1].doubles[0])
		}
		b.WriteString(".\n")
	}
	return b.String()
}

func renderLB(rs []lbResult) string {
	var b strings.Builder
	b.WriteString(stamp() + ` Two upstreams on loopback answer one line per connection.
Each balancer runs as its own process, with TCP connect checks every 250 ms (one
failure marks an upstream down): Ballast's ` + "`machined/lb`" + ` and Debian's haproxy 2.6 in TCP
mode (` + "`check inter 250ms fall 1`" + `, ` + "`retries 3`, `option redispatch`" + `). Latency is
connect + one request/response, 3000 sequential connections; the "added" figures
subtract the same measured straight to an upstream. Throughput: 8 concurrent
clients, a new connection per request, for 4 s. Then one upstream is killed while a
client opens a connection every 5 ms: the time until the balancer reports it down
(its metrics; haproxy's stats socket) and the client connections that failed.

| balancer | p50 | p99 | added p50 | added p99 | connections/s | killed upstream marked down after | failed client connections |
| --- | --: | --: | --: | --: | --: | --: | --: |
`)
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.0f | %s | %d |\n", r.name, us(r.p50), us(r.p99), us(r.added50), us(r.added99), r.rps, ms(r.markedDown), r.failures)
	}
	if len(rs) == 2 {
		fmt.Fprintf(&b, "\nDirect to an upstream: p50 %s, p99 %s. Ballast's connections/s are %.2f× haproxy's.\n", us(rs[0].directP50), us(rs[0].directP99), rs[0].rps/rs[1].rps)
	}
	return b.String()
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }
func us(d time.Duration) string { return d.Round(time.Microsecond).String() }
