// Command bench measures local clusters and writes docs/benchmarks.md:
// cluster create wall time by size, per-node join time, and etcd put
// throughput and p99 latency through 1- and 3-member clusters. It needs
// root and the binaries from `make build`. Numbers are measurements, never
// pass/fail criteria.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/ballast-os/ballast/pkg/nodeconfig"
)

var (
	binDir = flag.String("bin", "_out/bin", "directory with nodectl and machined")
	out    = flag.String("out", "docs/benchmarks.md", "report file")
	quick  = flag.Bool("quick", false, "fewer sizes, rounds and a shorter load")

	sections = flag.String("sections", "clusters,etcd,vip,lb,kubernetes,nodes,upgrade,rollout,upgrade-k8s,install,boot", "what to measure: clusters, etcd, vip, lb, kubernetes, nodes, upgrade, rollout, upgrade-k8s, install, boot (comma-separated); the report keeps the other sections as they were")

	lbServe     = flag.String("lb-serve", "", "internal: run Ballast's API load balancer on this address (the LB benchmark's own process)")
	lbMetrics   = flag.String("lb-metrics", "", "internal: with -lb-serve, serve its metrics here")
	lbUpstreams = flag.String("lb-upstreams", "", "internal: with -lb-serve, the upstreams")
)

type createResult struct {
	cps, workers int
	wall         time.Duration
	joins        []time.Duration // config applied → voting member
	learner      []time.Duration // learner added → voting member
}

type loadResult struct {
	members    int
	puts       int
	throughput float64
	p50, p99   time.Duration
}

func main() {
	flag.Parse()
	if *lbServe != "" {
		// The balancer as its own process, for the side-by-side with haproxy.
		if err := serveLB(*lbServe, *lbMetrics, strings.Split(*lbUpstreams, ",")); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (local clusters use network namespaces)")
		os.Exit(1)
	}
	want := map[string]bool{}
	for _, s := range strings.Split(*sections, ",") {
		want[strings.TrimSpace(s)] = true
	}
	blocks := map[string]string{}
	if want["clusters"] {
		creates, loads, err := measureClusters()
		if err != nil {
			fail(err)
		}
		blocks["clusters"] = renderClusters(creates, loads)
	}
	if want["etcd"] {
		forms, loads, err := measureEtcd()
		if err != nil {
			fail(err)
		}
		blocks["etcd"] = renderEtcd(forms, loads)
	}
	if want["kubernetes"] {
		r, err := measureKubernetes()
		if err != nil {
			fail(err)
		}
		blocks["kubernetes"] = renderKubernetes(r)
	}
	if want["nodes"] {
		r, err := measureNodes()
		if err != nil {
			fail(err)
		}
		blocks["nodes"] = renderNodes(r)
	}
	if want["upgrade"] {
		r, err := measureUpgrade()
		if err != nil {
			fail(err)
		}
		blocks["upgrade"] = renderUpgrade(r)
	}
	if want["rollout"] {
		r, err := measureRollout()
		if err != nil {
			fail(err)
		}
		blocks["rollout"] = renderRollout(r)
	}
	if want["upgrade-k8s"] {
		r, err := measureK8sUpgrade()
		if err != nil {
			fail(err)
		}
		blocks["upgrade-k8s"] = renderK8sUpgrade(r)
	}
	if want["install"] {
		r, err := measureInstall()
		if err != nil {
			fail(err)
		}
		blocks["install"] = renderInstall(r)
	}
	if want["boot"] {
		r, err := measureBoot()
		if err != nil {
			fail(err)
		}
		blocks["boot"] = renderBoot(r)
	}
	if want["vip"] {
		rounds := 20
		if *quick {
			rounds = 3
		}
		var results []vipResult
		for _, mk := range []func() (vipFleet, error){
			func() (vipFleet, error) { return newBallastFleet() },
			func() (vipFleet, error) { return newKeepalivedFleet() },
		} {
			f, err := mk()
			if err != nil {
				fail(err)
			}
			r, err := measureVIP(f, rounds)
			f.close()
			if err != nil {
				fail(err)
			}
			results = append(results, r)
		}
		blocks["vip"] = renderVIP(results)
	}
	if want["lb"] {
		results, err := measureLB(*quick)
		if err != nil {
			fail(err)
		}
		blocks["lb"] = renderLB(results)
	}
	if err := merge(*out, blocks); err != nil {
		fail(err)
	}
	fmt.Println("wrote", *out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func measureClusters() ([]createResult, []loadResult, error) {
	sizes := [][2]int{{1, 0}, {3, 0}, {5, 0}, {3, 1}, {3, 4}, {3, 16}}
	if *quick {
		sizes = [][2]int{{1, 0}, {3, 1}}
	}
	var creates []createResult
	var loads []loadResult
	for _, sz := range sizes {
		r, err := measureCreate(sz[0], sz[1], func(dir string) error {
			if sz[1] != 0 || (sz[0] != 1 && sz[0] != 3) {
				return nil
			}
			l, err := measureLoad(dir, sz[0])
			if err == nil {
				loads = append(loads, l)
			}
			return err
		})
		if err != nil {
			return nil, nil, err
		}
		creates = append(creates, r)
		fmt.Printf("%d CP + %d workers: %s\n", r.cps, r.workers, r.wall.Round(10*time.Millisecond))
	}
	return creates, loads, nil
}

func nodectl(env []string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(*binDir, "nodectl"), args...)
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return string(b), fmt.Errorf("nodectl %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return string(b), nil
}

func measureCreate(cps, workers int, during func(dir string) error) (createResult, error) {
	root, err := os.MkdirTemp("", "ballast-bench-")
	if err != nil {
		return createResult{}, err
	}
	defer os.RemoveAll(root)
	env := []string{"NODECONFIG=" + filepath.Join(root, "nodeconfig")}
	name := fmt.Sprintf("bench%d-%d", cps, workers)
	args := []string{"--name", name, "--state", root}
	defer nodectl(env, append([]string{"cluster", "destroy"}, args...)...)
	start := time.Now()
	if _, err := nodectl(env, append([]string{"cluster", "create", "--controlplanes", fmt.Sprint(cps), "--workers", fmt.Sprint(workers), "--cidr", "10.88.0.0/24", "--no-kubernetes"}, args...)...); err != nil {
		return createResult{}, err
	}
	r := createResult{cps: cps, workers: workers, wall: time.Since(start)}
	dir := filepath.Join(root, name)
	for i := 2; i <= cps; i++ {
		if d, l, ok := joinTime(filepath.Join(dir, "nodes", fmt.Sprintf("cp%d", i), "machined.log")); ok {
			r.joins = append(r.joins, d)
			r.learner = append(r.learner, l)
		}
	}
	return r, during(dir)
}

var tsRE = regexp.MustCompile(`^time=(\S+) `)

// joinTime reads a node's log: the time from "config applied" and from
// "added as etcd learner" to "promoted".
func joinTime(logPath string) (time.Duration, time.Duration, bool) {
	t := logTimes(logPath)
	if t.applied.IsZero() || t.promoted.IsZero() || t.added.IsZero() {
		return 0, 0, false
	}
	return t.promoted.Sub(t.applied), t.promoted.Sub(t.added), true
}

// nodeTimes are when a node's log first says its config was applied, it was
// added as an etcd learner, and it was promoted.
type nodeTimes struct{ applied, added, promoted time.Time }

func logTimes(path string) nodeTimes {
	var t nodeTimes
	f, err := os.Open(path)
	if err != nil {
		return t
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m := tsRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		switch {
		case t.applied.IsZero() && strings.Contains(line, `msg="machine config applied`):
			t.applied = ts
		case t.added.IsZero() && strings.Contains(line, "added as etcd learner"):
			t.added = ts
		case t.promoted.IsZero() && strings.Contains(line, "promoted to voting etcd member"):
			t.promoted = ts
		}
	}
	return t
}

// measureLoad puts keys through every member for a fixed time with 16
// concurrent writers and reports throughput and latency percentiles.
func measureLoad(dir string, members int) (loadResult, error) {
	ncFile, err := nodeconfig.Load(filepath.Join(dir, "nodeconfig"))
	if err != nil {
		return loadResult{}, err
	}
	_, nc, err := ncFile.Current("")
	if err != nil {
		return loadResult{}, err
	}
	pkiDir := filepath.Join(dir, "etcd-pki")
	env := []string{"NODECONFIG=" + filepath.Join(dir, "nodeconfig")}
	if _, err := nodectl(env, "-n", nc.Endpoints[0], "etcd", "client-cert", "--output-dir", pkiDir); err != nil {
		return loadResult{}, err
	}
	tlsConf, err := etcdClientTLS(mustRead(pkiDir, "ca.crt"), mustRead(pkiDir, "client.crt"), mustRead(pkiDir, "client.key"))
	if err != nil {
		return loadResult{}, err
	}
	var eps []string
	for _, e := range nc.Endpoints {
		eps = append(eps, "https://"+e+":2379")
	}
	duration := 10 * time.Second
	if *quick {
		duration = 3 * time.Second
	}
	return putLoad(eps, tlsConf, members, duration)
}

func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "—"
	}
	var s []string
	for _, d := range ds {
		s = append(s, d.Round(10*time.Millisecond).String())
	}
	return strings.Join(s, ", ")
}

func mustRead(dir, name string) []byte {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		panic(err)
	}
	return b
}

func renderClusters(creates []createResult, loads []loadResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured on %s, %d CPUs, %s. Targets on a 2-core machine: 3 CP + 1 worker healthy in ≤ 30 s; join ≤ 5 s per node.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.Version())
	b.WriteString("### `nodectl cluster create` until `health` is green\n\n| control planes | workers | wall time | per joining node: config applied → voting member | per joining node: learner added → voting member |\n| --: | --: | --: | --- | --- |\n")
	for _, c := range creates {
		fmt.Fprintf(&b, "| %d | %d | %s | %s | %s |\n", c.cps, c.workers, c.wall.Round(10*time.Millisecond), durations(c.joins), durations(c.learner))
	}
	b.WriteString(`
All nodes are configured at the same moment, then the first control plane
bootstraps etcd. The others join together: each takes a lock in etcd, is added
as a learner and starts, then waits until every configured peer is a member
(at most 3 s after the membership last grew) before asking for promotion. So every node is added while the
bootstrap node is the only voter, and etcd's strict reconfiguration check (kept
on: every voter connected for 5 s before a member is added) has nobody to wait
for. Before, with one learner at a time, consecutive joins were ~5 s apart.
`)
	b.WriteString("\n### etcd puts (16 concurrent writers, 256-byte values, TLS)\n\n| members | puts | puts/s | p50 | p99 |\n| --: | --: | --: | --: | --: |\n")
	for _, l := range loads {
		fmt.Fprintf(&b, "| %d | %d | %.0f | %s | %s |\n", l.members, l.puts, l.throughput, l.p50.Round(10*time.Microsecond), l.p99.Round(10*time.Microsecond))
	}
	return b.String()
}
