// Package netnstest holds what tests and benchmarks of namespaced networking
// share: listening and dialing inside a network namespace, running a test in
// a fresh one, the root check of privileged tests, reading a link's MAC and
// the host's neighbour table, and a sampler that reads every node's
// namespace at a fixed interval and counts the moments when two nodes carry
// the same address on an up link.
package netnstest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inNetns runs fn on a thread switched into the named namespace. Sockets fn
// opens stay in that namespace.
func inNetns(ns string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		panic(fmt.Sprintf("cannot return to the original network namespace: %v", err)) // the thread is unusable
	}
	return ferr
}

// ListenIn opens a TCP listener inside the named network namespace.
func ListenIn(ns, addr string) (net.Listener, error) {
	var ln net.Listener
	err := inNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// ServeName answers every connection on ln with name and a newline, then
// closes it, until ln is closed.
func ServeName(ln net.Listener, name string) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = conn.Write([]byte(name + "\n"))
		conn.Close()
	}
}

// Answer connects to addr and returns the first line the server sends.
func Answer(addr string, timeout time.Duration) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	return readLine(conn, timeout)
}

// AnswerIn is Answer from inside the named network namespace.
func AnswerIn(ns, addr string, timeout time.Duration) (string, error) {
	conn, err := dialIn(ns, addr, timeout)
	if err != nil {
		return "", err
	}
	return readLine(conn, timeout)
}

// dialIn opens a TCP connection from inside the named network namespace.
func dialIn(ns, addr string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := inNetns(ns, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return conn, err
}

// HTTPGetIn sends GET / to addr from inside the named network namespace
// and returns the response's status line.
func HTTPGetIn(ns, addr string, timeout time.Duration) (string, error) {
	conn, err := dialIn(ns, addr, timeout)
	if err != nil {
		return "", err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		conn.Close()
		return "", err
	}
	return readLine(conn, timeout)
}

func readLine(conn net.Conn, timeout time.Duration) (string, error) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

// MAC returns the hardware address of link in the named namespace.
func MAC(ns, link string) (string, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return "", err
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return "", err
	}
	defer nl.Close()
	l, err := nl.LinkByName(link)
	if err != nil {
		return "", err
	}
	return l.Attrs().HardwareAddr.String(), nil
}

// HostNeighbour is the MAC of the host's neighbour entry for ip ("" when
// it has none).
func HostNeighbour(ip string) (string, error) {
	out, err := exec.Command("ip", "neigh", "show", ip).Output()
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(out))
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1], nil
		}
	}
	return "", nil
}

// Dist renders p50/p95/max of ds.
func Dist(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	p50, p95, mx := Quantiles(ds)
	return fmt.Sprintf("p50 %s p95 %s max %s (n=%d)", p50.Round(time.Millisecond), p95.Round(time.Millisecond), mx.Round(time.Millisecond), len(ds))
}

// Quantiles returns p50, p95 and max of ds (nearest rank).
func Quantiles(ds []time.Duration) (p50, p95, mx time.Duration) {
	return Quantile(ds, 0.5), Quantile(ds, 0.95), Quantile(ds, 1)
}

// Quantile returns the q quantile of ds (nearest rank; 0 for none).
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// Sampler reads the address on link in every namespace every interval.
type Sampler struct {
	stopc chan struct{}
	done  chan struct{}

	mu    sync.Mutex
	cur   map[string]bool // netns → carries the address (true: on an up link)
	bad   []string
	count int
}

// StartSampler starts sampling ip on link in each namespace.
func StartSampler(ip, link string, namespaces []string, interval time.Duration) (*Sampler, error) {
	s := &Sampler{stopc: make(chan struct{}), done: make(chan struct{}), cur: map[string]bool{}}
	type handle struct {
		ns string
		nl *netlink.Handle
	}
	var hs []handle
	for _, ns := range namespaces {
		h, err := netns.GetFromName(ns)
		if err != nil {
			return nil, err
		}
		nl, err := netlink.NewHandleAt(h)
		h.Close()
		if err != nil {
			return nil, err
		}
		hs = append(hs, handle{ns, nl})
	}
	want := net.ParseIP(ip)
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
				l, err := h.nl.LinkByName(link)
				if err != nil {
					continue
				}
				addrs, err := h.nl.AddrList(l, netlink.FAMILY_V4)
				if err != nil {
					continue
				}
				for _, a := range addrs {
					if a.IP.Equal(want) {
						// Up and with a carrier: a link whose cable is pulled
						// (the host's side down) answers nobody.
						isUp := l.Attrs().Flags&net.FlagUp != 0 && l.Attrs().Flags&net.FlagRunning != 0
						seen[h.ns] = isUp
						if isUp {
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
			case <-time.After(interval):
			}
		}
	}()
	return s, nil
}

// Holders are the namespaces carrying the address on an up link.
func (s *Sampler) Holders() []string {
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

// Has reports whether ns carries the address at all (up or down link).
func (s *Sampler) Has(ns string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.cur[ns]
	return ok
}

// Stop ends sampling; it may be called more than once.
func (s *Sampler) Stop() {
	select {
	case <-s.stopc:
	default:
		close(s.stopc)
	}
	<-s.done
}

// Violations are the samples that saw two holders at once.
func (s *Sampler) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bad...)
}

// Samples counts the samples taken.
func (s *Sampler) Samples() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// RequireRoot fails t unless it runs as root, or skips it when
// BALLAST_SKIP_PRIVILEGED=1 asks for that knowingly; why says what needs
// root.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("BALLAST_SKIP_PRIVILEGED") == "1" {
		t.Skip("privileged test skipped because BALLAST_SKIP_PRIVILEGED=1: " + why)
	}
	t.Fatal("privileged test run without root: " + why + ". Set BALLAST_SKIP_PRIVILEGED=1 to skip it knowingly")
}

// InFreshNetns runs fn on a thread switched into a new, empty network
// namespace (root): netlink calls fn makes act there. The thread returns to
// its namespace afterwards; the new one goes with its last reference.
func InFreshNetns(t testing.TB, fn func()) {
	t.Helper()
	RequireRoot(t, "it needs a network namespace")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // switches the thread into it
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // the thread would stay in the test's namespace
		}
	}()
	fn()
}
