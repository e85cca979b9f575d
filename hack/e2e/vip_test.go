package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestVIPFailover puts the control-plane VIP through crashes, partitions,
// freezes and graceful handovers on a 3-control-plane local cluster, while
// an independent sampler reads every node's namespace every 20 ms and
// counts the moments when two nodes carry the VIP on an up link (there must
// be none). After each failover the host's neighbour entry for the VIP
// must point at the new holder's MAC (gratuitous ARP), and the VIP must
// answer TCP from the new holder.
func TestVIPFailover(t *testing.T) {
	requireRoot(t)
	c := newLocalCluster(t, "e2evip", "10.81.0.0/24")
	c.create("--controlplanes", "3", "--workers", "0")
	s := c.show()
	if s.VIP != "10.81.0.254" || s.Endpoint != "https://10.81.0.254:6443" {
		t.Fatalf("cluster show: VIP %q, endpoint %q; want the subnet's last usable address as both", s.VIP, s.Endpoint)
	}
	cps := s.Nodes[:3]
	byNetns := map[string]clusterNode{}
	for _, n := range cps {
		byNetns[n.Netns] = n
		ln := listenIn(t, n.Netns, "0.0.0.0:6443")
		go serveName(ln, n.Name)
	}
	nodes := "--control-plane-nodes=" + cps[0].Address + "," + cps[1].Address + "," + cps[2].Address
	smp := startSampler(t, s.VIP, cps)
	defer smp.stop()

	holder := func() clusterNode {
		t.Helper()
		var h string
		waitFor(t, "one VIP holder", 30*time.Second, func() error {
			hs := smp.holders()
			if len(hs) != 1 {
				return fmt.Errorf("holders %v", hs)
			}
			h = hs[0]
			return nil
		})
		return byNetns[h]
	}
	answer := func(timeout time.Duration) (string, error) {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(s.VIP, "6443"), timeout)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(timeout))
		return bufio.NewReader(conn).ReadString('\n')
	}
	// failover waits for a holder other than old, checks the host's
	// neighbour entry, then TCP; it returns the time from start.
	failover := func(t *testing.T, old clusterNode, start time.Time) (clusterNode, time.Duration) {
		t.Helper()
		var next string
		waitFor(t, "another node to hold the VIP", 30*time.Second, func() error {
			hs := smp.holders()
			if len(hs) != 1 || hs[0] == old.Netns {
				return fmt.Errorf("holders %v", hs)
			}
			next = hs[0]
			return nil
		})
		n := byNetns[next]
		waitFor(t, "the VIP to answer TCP from "+n.Name, 10*time.Second, func() error {
			got, err := answer(200 * time.Millisecond)
			if err != nil {
				return err
			}
			if strings.TrimSpace(got) != n.Name {
				return fmt.Errorf("answered by %q", got)
			}
			return nil
		})
		took := time.Since(start)
		if mac, neigh := macOf(t, n.Netns), hostNeighbour(t, s.VIP); neigh != mac {
			t.Errorf("the host's neighbour entry for the VIP is %q, want the new holder %s's %s", neigh, n.Name, mac)
		}
		return n, took
	}
	prime := func() {
		t.Helper()
		waitFor(t, "the VIP to answer", 30*time.Second, func() error { _, err := answer(time.Second); return err })
	}
	var crash, partition, freeze, graceful []time.Duration

	for i := range 10 {
		prime()
		h := holder()
		start := time.Now()
		c.ip(t, "-n", h.Netns, "link", "set", "eth0", "down")
		killNode(t, pidOf(t, h.StateDir))
		_, took := failover(t, h, start)
		crash = append(crash, took)
		t.Logf("crash %d: %s lost power; the VIP answered from another node after %s", i+1, h.Name, took.Round(time.Millisecond))
		c.ip(t, "-n", h.Netns, "link", "set", "eth0", "up")
		c.startNode(h.Netns, h.StateDir, h.Address)
		c.health(nodes)
	}
	for i := range 5 {
		prime()
		h := holder()
		start := time.Now()
		c.ip(t, "-n", h.Netns, "link", "set", "eth0", "down")
		_, took := failover(t, h, start)
		partition = append(partition, took)
		// The isolated node dropped the address by itself.
		waitFor(t, h.Name+" to drop the VIP while partitioned", 5*time.Second, func() error {
			if smp.has(h.Netns) {
				return errors.New("still carries it")
			}
			return nil
		})
		c.ip(t, "-n", h.Netns, "link", "set", "eth0", "up")
		c.health(nodes)
		t.Logf("partition %d: %s cut off; failover after %s; it dropped the VIP itself and did not take it back", i+1, h.Name, took.Round(time.Millisecond))
	}
	for i := range 3 {
		prime()
		h := holder()
		pid := pidOf(t, h.StateDir)
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		_, took := failover(t, h, start)
		freeze = append(freeze, took)
		time.Sleep(time.Second)
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // the sampler watches the woken node
		c.health(nodes)
		t.Logf("freeze %d: %s stopped; failover after %s; after SIGCONT it did not answer on the VIP", i+1, h.Name, took.Round(time.Millisecond))
	}
	for i := range 3 {
		prime()
		h := holder()
		start := time.Now()
		c.must("-n", h.Address, "reboot")
		_, took := failover(t, h, start)
		graceful = append(graceful, took)
		c.health(nodes)
		t.Logf("graceful %d: %s rebooted; handover after %s", i+1, h.Name, took.Round(time.Millisecond))
	}

	smp.stop()
	if v := smp.violations(); len(v) > 0 {
		t.Errorf("two holders seen at once %d times, e.g. %s", len(v), v[0])
	}
	t.Logf("VIP failover (fault to TCP answer from the new holder): crash %s; partition %s; freeze %s; graceful %s; sampler: %d samples, 0 double holders",
		dist(crash), dist(partition), dist(freeze), dist(graceful), smp.samples())
}

// dist renders p50/p95/max of ds.
func dist(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("p50 %s p95 %s max %s (n=%d)", q(0.5).Round(time.Millisecond), q(0.95).Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), len(s))
}

// listenIn opens a TCP listener inside the named network namespace.
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	ln, lerr := net.Listen("tcp", addr)
	if err := netns.Set(orig); err != nil {
		panic(fmt.Sprintf("cannot return to the test's namespace: %v", err)) // the thread is unusable
	}
	if lerr != nil {
		t.Fatal(lerr)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serveName answers every connection with name and a newline.
func serveName(ln net.Listener, name string) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = conn.Write([]byte(name + "\n"))
		conn.Close()
	}
}

func macOf(t *testing.T, ns string) string {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	l, err := nl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr.String()
}

// hostNeighbour is the host's neighbour entry (MAC) for ip.
func hostNeighbour(t *testing.T, ip string) string {
	t.Helper()
	out, err := exec.Command("ip", "neigh", "show", ip).Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// sampler reads the VIP's presence on every node's up eth0.
type sampler struct {
	stopc chan struct{}
	done  chan struct{}

	mu    sync.Mutex
	cur   map[string]bool // netns → carries the VIP on an up link
	bad   []string
	count int
}

func startSampler(t *testing.T, vip string, nodes []clusterNode) *sampler {
	s := &sampler{stopc: make(chan struct{}), done: make(chan struct{}), cur: map[string]bool{}}
	type handle struct {
		ns string
		nl *netlink.Handle
	}
	var hs []handle
	for _, n := range nodes {
		h, err := netns.GetFromName(n.Netns)
		if err != nil {
			t.Fatal(err)
		}
		nl, err := netlink.NewHandleAt(h)
		h.Close()
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, handle{n.Netns, nl})
	}
	ip := net.ParseIP(vip)
	go func() {
		defer close(s.done)
		defer func() {
			for _, h := range hs {
				h.nl.Close()
			}
		}()
		for {
			seen := map[string]bool{}
			var up []string
			for _, h := range hs {
				l, err := h.nl.LinkByName("eth0")
				if err != nil {
					continue
				}
				addrs, err := h.nl.AddrList(l, netlink.FAMILY_V4)
				if err != nil {
					continue
				}
				for _, a := range addrs {
					if a.IP.Equal(ip) {
						seen[h.ns] = l.Attrs().Flags&net.FlagUp != 0
						if seen[h.ns] {
							up = append(up, h.ns)
						}
					}
				}
			}
			s.mu.Lock()
			s.cur = seen
			s.count++
			if len(up) > 1 {
				s.bad = append(s.bad, time.Now().Format("15:04:05.000")+" "+strings.Join(up, "+"))
			}
			s.mu.Unlock()
			select {
			case <-s.stopc:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return s
}

// holders are the namespaces carrying the VIP on an up link.
func (s *sampler) holders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for ns, up := range s.cur {
		if up {
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out
}

// has reports whether ns carries the VIP at all (up or down link).
func (s *sampler) has(ns string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.cur[ns]
	return ok
}

func (s *sampler) stop() {
	select {
	case <-s.stopc:
	default:
		close(s.stopc)
	}
	<-s.done
}

func (s *sampler) violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bad...)
}

func (s *sampler) samples() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}
