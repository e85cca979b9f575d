package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ballast-os/ballast/pkg/nodeconfig"
	"github.com/ballast-os/ballast/pkg/pki"
)

// The etcd section puts Ballast's embedded etcd side by side with stock
// etcd servers on the same kind of network (one namespace per member on a
// bridge), the same TLS and the same load: formation of 3 and 5 members
// against Debian's etcd-server (static initial cluster), and puts through 3
// members against etcd built from the same go.etcd.io/etcd/server/v3 version
// Ballast embeds.

const stockEtcdSubnet = "10.89.0"

var stockEtcd = flag.String("stock-etcd", "_out/etcd/v3.6.16/etcd", "etcd built from the go.etcd.io/etcd/server/v3 version Ballast embeds (make bench builds it)")

type formationResult struct {
	who     string
	members int
	took    []time.Duration
}

type etcdLoadRound struct {
	ballast, stock loadResult
}

// stockFleet is N stock etcd members in their own namespaces on a bridge.
type stockFleet struct {
	dir    string
	bridge string
	nss    []string
	addrs  []string
	procs  []*exec.Cmd
	ca     *pki.CertAndKey
	client *tls.Config
}

func newStockFleet(n int) (*stockFleet, error) {
	dir, err := os.MkdirTemp("", "ballast-bench-etcd-")
	if err != nil {
		return nil, err
	}
	f := &stockFleet{dir: dir, bridge: "bstkbr0"}
	f.cleanup(n)
	if err := f.network(n); err != nil {
		f.close()
		return nil, err
	}
	if f.ca, err = pki.NewCA("bench-etcd-ca"); err != nil {
		return nil, err
	}
	cl, err := pki.Issue(f.ca, pki.Request{CommonName: "bench-client", Usage: pki.UsageClient})
	if err != nil {
		return nil, err
	}
	if f.client, err = etcdClientTLS(f.ca.Crt, cl.Crt, cl.Key); err != nil {
		return nil, err
	}
	for i, a := range f.addrs {
		ck, err := pki.Issue(f.ca, pki.Request{CommonName: fmt.Sprintf("m%d", i+1), IPs: []net.IP{net.ParseIP(a)}, Usage: pki.UsageServer | pki.UsageClient})
		if err != nil {
			return nil, err
		}
		for name, data := range map[string][]byte{"ca.crt": f.ca.Crt, fmt.Sprintf("m%d.crt", i+1): ck.Crt, fmt.Sprintf("m%d.key", i+1): ck.Key} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				return nil, err
			}
		}
	}
	return f, nil
}

func (f *stockFleet) network(n int) error {
	for _, args := range [][]string{
		{"link", "add", f.bridge, "type", "bridge"},
		{"addr", "add", stockEtcdSubnet + ".1/24", "dev", f.bridge},
		{"link", "set", f.bridge, "up"},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	for i := range n {
		ns, veth := fmt.Sprintf("bench-etcd-%d", i+1), fmt.Sprintf("bstkv%d", i+1)
		addr := fmt.Sprintf("%s.%d", stockEtcdSubnet, i+2)
		f.nss, f.addrs = append(f.nss, ns), append(f.addrs, addr)
		for _, args := range [][]string{
			{"netns", "add", ns},
			{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"link", "set", veth, "master", f.bridge, "up"},
			{"-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		} {
			if err := run("ip", args...); err != nil {
				return err
			}
		}
	}
	return nil
}

// start launches every member at once with a static initial cluster.
func (f *stockFleet) start(binary string) error {
	var initial []string
	for i, a := range f.addrs {
		initial = append(initial, fmt.Sprintf("m%d=https://%s:2380", i+1, a))
	}
	for i, a := range f.addrs {
		name := fmt.Sprintf("m%d", i+1)
		p := func(s string) string { return filepath.Join(f.dir, s) }
		args := []string{"--net=/run/netns/" + f.nss[i], binary,
			"--name", name, "--data-dir", p(name + ".etcd"),
			"--listen-peer-urls", "https://" + a + ":2380", "--initial-advertise-peer-urls", "https://" + a + ":2380",
			"--listen-client-urls", "https://" + a + ":2379", "--advertise-client-urls", "https://" + a + ":2379",
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--initial-cluster-token", "bench",
			"--cert-file", p(name + ".crt"), "--key-file", p(name + ".key"), "--trusted-ca-file", p("ca.crt"), "--client-cert-auth",
			"--peer-cert-file", p(name + ".crt"), "--peer-key-file", p(name + ".key"), "--peer-trusted-ca-file", p("ca.crt"), "--peer-client-cert-auth",
			"--heartbeat-interval", "100", "--election-timeout", "1000",
		}
		logf, err := os.Create(p(name + ".log"))
		if err != nil {
			return err
		}
		cmd := exec.Command("nsenter", args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH=amd64")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			logf.Close()
			return err
		}
		logf.Close()
		f.procs = append(f.procs, cmd)
	}
	return nil
}

// logTail returns the end of every member's log (for errors).
func (f *stockFleet) logTail() string {
	var b strings.Builder
	for i := range f.addrs {
		data, _ := os.ReadFile(filepath.Join(f.dir, fmt.Sprintf("m%d.log", i+1)))
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 5 {
			lines = lines[len(lines)-5:]
		}
		fmt.Fprintf(&b, "--- m%d\n%s\n", i+1, strings.Join(lines, "\n"))
	}
	return b.String()
}

func (f *stockFleet) endpoints() []string {
	var eps []string
	for _, a := range f.addrs {
		eps = append(eps, "https://"+a+":2379")
	}
	return eps
}

// etcdClientTLS is the TLS config of an etcd client: the CA, a client
// certificate; the server name is each endpoint's address.
func etcdClientTLS(caPEM, crtPEM, keyPEM []byte) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(crtPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	pool, err := pki.Pool(caPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{cert}}, nil
}

// waitWritable returns once a put succeeds through every member.
func waitWritable(eps []string, tlsConf *tls.Config, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, ep := range eps {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, TLS: tlsConf, DialTimeout: time.Second, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			_, err = cli.Put(ctx, "bench/formed", "1")
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				cli.Close()
				return fmt.Errorf("%s not writable after %s: %w", ep, timeout, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cli.Close()
	}
	return nil
}

func (f *stockFleet) close() {
	for _, c := range f.procs {
		if c.Process != nil {
			_ = c.Process.Kill()
			_, _ = c.Process.Wait()
		}
	}
	f.cleanup(len(f.nss))
	_ = os.RemoveAll(f.dir)
}

func (f *stockFleet) cleanup(n int) {
	for i := range max(n, 5) {
		_ = run("ip", "netns", "del", fmt.Sprintf("bench-etcd-%d", i+1))
	}
	_ = run("ip", "link", "del", f.bridge)
}

// stockFormation launches n members of binary and times launch → every
// member accepts a put.
func stockFormation(binary string, n int) (time.Duration, error) {
	f, err := newStockFleet(n)
	if err != nil {
		return 0, err
	}
	defer f.close()
	start := time.Now()
	if err := f.start(binary); err != nil {
		return 0, err
	}
	if err := waitWritable(f.endpoints(), f.client, time.Minute); err != nil {
		return 0, fmt.Errorf("%w\n%s", err, f.logTail())
	}
	return time.Since(start), nil
}

// ballastFormation creates an etcd-only cluster and reads its logs: first
// control plane's config applied → the last member promoted.
func ballastFormation(cps int) (time.Duration, error) {
	var took time.Duration
	_, err := measureCreate(cps, 0, func(dir string) error {
		var first, last time.Time
		for i := 1; i <= cps; i++ {
			t := logTimes(filepath.Join(dir, "nodes", fmt.Sprintf("cp%d", i), "machined.log"))
			applied, promoted := t.applied, t.promoted
			if i == 1 {
				first = applied
				promoted = applied
			}
			if promoted.IsZero() {
				return fmt.Errorf("cp%d: no promotion in its log", i)
			}
			if promoted.After(last) {
				last = promoted
			}
		}
		took = last.Sub(first)
		return nil
	})
	return took, err
}

// putLoad runs 16 concurrent writers of 256-byte values for d through the
// endpoints and reports throughput and latency.
func putLoad(eps []string, tlsConf *tls.Config, members int, d time.Duration) (loadResult, error) {
	// The load ends by cancelling in-flight puts; the client would log each.
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: tlsConf, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return loadResult{}, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	val := strings.Repeat("v", 256)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				t0 := time.Now()
				if _, err := cli.Put(ctx, fmt.Sprintf("bench/%d/%d", w, i), val); err != nil {
					mu.Lock()
					if firstErr == nil && ctx.Err() == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				dd := time.Since(t0)
				mu.Lock()
				lat = append(lat, dd)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		return loadResult{}, fmt.Errorf("no put succeeded through %v: %v", eps, firstErr)
	}
	return loadResult{members: members, puts: len(lat), throughput: float64(len(lat)) / d.Seconds(),
		p50: lat[len(lat)/2], p99: lat[len(lat)*99/100]}, nil
}

// ballastLoad creates an etcd-only 3-CP cluster and loads it.
func ballastLoad(d time.Duration) (loadResult, error) {
	var res loadResult
	_, err := measureCreate(3, 0, func(dir string) error {
		ncFile, err := nodeconfig.Load(filepath.Join(dir, "nodeconfig"))
		if err != nil {
			return err
		}
		_, nc, err := ncFile.Current("")
		if err != nil {
			return err
		}
		pkiDir := filepath.Join(dir, "etcd-pki")
		env := []string{"NODECONFIG=" + filepath.Join(dir, "nodeconfig")}
		if _, err := nodectl(env, "-n", nc.Endpoints[0], "etcd", "client-cert", "--output-dir", pkiDir); err != nil {
			return err
		}
		tlsConf, err := etcdClientTLS(mustRead(pkiDir, "ca.crt"), mustRead(pkiDir, "client.crt"), mustRead(pkiDir, "client.key"))
		if err != nil {
			return err
		}
		var eps []string
		for _, e := range nc.Endpoints {
			eps = append(eps, "https://"+e+":2379")
		}
		res, err = putLoad(eps, tlsConf, 3, d)
		return err
	})
	return res, err
}

// stockLoad starts 3 stock members built from the embedded version and
// loads them.
func stockLoad(binary string, d time.Duration) (loadResult, error) {
	f, err := newStockFleet(3)
	if err != nil {
		return loadResult{}, err
	}
	defer f.close()
	if err := f.start(binary); err != nil {
		return loadResult{}, err
	}
	if err := waitWritable(f.endpoints(), f.client, time.Minute); err != nil {
		return loadResult{}, fmt.Errorf("%w\n%s", err, f.logTail())
	}
	return putLoad(f.endpoints(), f.client, 3, d)
}

func measureEtcd() ([]formationResult, []etcdLoadRound, error) {
	stock36 := *stockEtcd
	if _, err := os.Stat(stock36); err != nil {
		return nil, nil, fmt.Errorf("%s: %w (make bench builds it)", stock36, err)
	}
	debian, err := exec.LookPath("etcd")
	if err != nil {
		return nil, nil, fmt.Errorf("Debian's etcd-server: %w (hack/install-deps.sh bench)", err)
	}
	rounds, d := 4, 10*time.Second
	if *quick {
		rounds, d = 1, 3*time.Second
	}
	var forms []formationResult
	for _, n := range []int{3, 5} {
		b := formationResult{who: "Ballast (config applied → last member voting)", members: n}
		s := formationResult{who: "Debian etcd-server " + etcdVersion(debian) + " (launch → every member takes a put)", members: n}
		for range rounds {
			t, err := ballastFormation(n)
			if err != nil {
				return nil, nil, err
			}
			b.took = append(b.took, t)
			t, err = stockFormation(debian, n)
			if err != nil {
				return nil, nil, err
			}
			s.took = append(s.took, t)
			fmt.Printf("formation %d members: Ballast %s, stock %s\n", n, b.took[len(b.took)-1].Round(time.Millisecond), t.Round(time.Millisecond))
		}
		forms = append(forms, b, s)
	}
	var loads []etcdLoadRound
	for range rounds {
		var r etcdLoadRound
		if r.ballast, err = ballastLoad(d); err != nil {
			return nil, nil, err
		}
		if r.stock, err = stockLoad(stock36, d); err != nil {
			return nil, nil, err
		}
		fmt.Printf("puts: Ballast %.0f/s p99 %s, stock %.0f/s p99 %s\n", r.ballast.throughput, r.ballast.p99, r.stock.throughput, r.stock.p99)
		loads = append(loads, r)
	}
	return forms, loads, nil
}

func etcdVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "etcd Version: "); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func renderEtcd(forms []formationResult, loads []etcdLoadRound) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured on %s, %d CPUs. Each round runs Ballast and the stock server one after the other on the same bridge layout (one network namespace per member), same TLS (client and peer certificates), same heartbeat (100 ms) and election timeout (1 s).\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU())
	b.WriteString("### etcd formation\n\n| members | who | p50 | max | rounds |\n| --: | --- | --: | --: | --- |\n")
	for _, f := range forms {
		sorted := append([]time.Duration(nil), f.took...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s |\n", f.members, f.who, median(f.took).Round(10*time.Millisecond), sorted[len(sorted)-1].Round(10*time.Millisecond), durations(f.took))
	}
	b.WriteString("\nTarget: ≤ 2 s for 3 control planes. The stock cluster is told all its members up front (static initial cluster); Ballast's nodes find each other and join at run time (bootstrap, then learners promoted), which is what an operator gets without writing the member list anywhere.\n")
	b.WriteString("\n### etcd puts through 3 members (16 TLS writers, 256-byte values, 10 s per round)\n\n| round | Ballast puts/s | stock puts/s | ratio | Ballast p50 / p99 | stock p50 / p99 |\n| --: | --: | --: | --: | --- | --- |\n")
	var ratios []float64
	var bp99, sp99 []time.Duration
	for i, l := range loads {
		ratio := l.ballast.throughput / l.stock.throughput
		ratios = append(ratios, ratio)
		bp99, sp99 = append(bp99, l.ballast.p99), append(sp99, l.stock.p99)
		fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.2f× | %s / %s | %s / %s |\n", i+1, l.ballast.throughput, l.stock.throughput, ratio,
			l.ballast.p50.Round(10*time.Microsecond), l.ballast.p99.Round(10*time.Microsecond), l.stock.p50.Round(10*time.Microsecond), l.stock.p99.Round(10*time.Microsecond))
	}
	sort.Float64s(ratios)
	if len(ratios) > 0 {
		mid := ratios[len(ratios)/2]
		if len(ratios)%2 == 0 {
			mid = (ratios[len(ratios)/2-1] + mid) / 2
		}
		fmt.Fprintf(&b, "\nMedian throughput ratio %.2f× (target ≥ 0.95×); median p99 %s against %s (target ≤ 1.1×). The stock server is etcd %s built from this module's go.sum (`go build go.etcd.io/etcd/server/v3`), the version Ballast embeds.\n",
			mid, median(bp99).Round(10*time.Microsecond), median(sp99).Round(10*time.Microsecond), etcdVersion(*stockEtcd))
	}
	return b.String()
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	switch {
	case len(s) == 0:
		return 0
	case len(s)%2 == 0:
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}
