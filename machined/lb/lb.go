// Package lb is the per-node API load balancer: a TCP proxy on
// 127.0.0.1:7445 to every known kube-apiserver, so that the node's own
// components reach the control plane through any healthy apiserver.
//
// Upstreams are health-checked by TCP connect every CheckInterval; one failed
// check or one failed dial marks an upstream down at once, so a dead upstream
// stops getting connections within a second. New connections go to the
// healthy upstream with the lowest measured connect latency; a dial that
// fails moves on to the next, so a client never waits on a dead upstream
// longer than DialTimeout. Until apiservers exist the balancer proxies
// whatever listens on the upstreams' port 6443.
package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults.
const (
	Port                 = 7445
	DefaultListen        = "127.0.0.1:7445"
	DefaultCheckInterval = 250 * time.Millisecond
	DefaultDialTimeout   = 300 * time.Millisecond
)

// Options configure a Balancer.
type Options struct {
	Logger        *slog.Logger
	CheckInterval time.Duration
	DialTimeout   time.Duration
	// Registerer receives the balancer's metrics (nil: none).
	Registerer prometheus.Registerer
}

// upstream is one apiserver address and what the checks learned of it.
type upstream struct {
	addr    string
	healthy bool
	latency time.Duration // EWMA of connect times
	checked bool
}

// Balancer proxies connections to the healthiest, fastest upstream.
type Balancer struct {
	opts    Options
	log     *slog.Logger
	metrics *lbMetrics

	mu        sync.Mutex
	upstreams map[string]*upstream
	// order is the upstreams best first, kept current by every change
	// so that a new connection does not sort.
	order []string
}

// New returns a balancer with no upstreams; SetUpstreams gives it some.
func New(opts Options) *Balancer {
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	return &Balancer{opts: opts, log: opts.Logger, metrics: newMetrics(opts.Registerer), upstreams: map[string]*upstream{}}
}

// SetUpstreams replaces the upstream set (host:port each). Known upstreams
// keep what their checks learned; new ones count as healthy until checked.
func (b *Balancer) SetUpstreams(addrs []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	next := map[string]*upstream{}
	for _, a := range addrs {
		if u, ok := b.upstreams[a]; ok {
			next[a] = u
		} else {
			next[a] = &upstream{addr: a, healthy: true}
			b.log.Info("lb: upstream added", "upstream", a)
		}
	}
	for a := range b.upstreams {
		if _, ok := next[a]; !ok {
			b.log.Info("lb: upstream removed", "upstream", a)
			b.metrics.forget(a)
		}
	}
	b.upstreams = next
	b.reorder()
}

// Upstreams returns the upstreams with their health, best first.
func (b *Balancer) Upstreams() []Upstream {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Upstream
	for _, u := range b.ordered() {
		out = append(out, Upstream{Addr: u.addr, Healthy: u.healthy, Latency: u.latency})
	}
	return out
}

// Upstream is an upstream's state, for status and tests.
type Upstream struct {
	Addr    string
	Healthy bool
	Latency time.Duration
}

// ordered lists upstreams healthy first, then by latency, then by address.
func (b *Balancer) ordered() []*upstream {
	us := make([]*upstream, 0, len(b.upstreams))
	for _, u := range b.upstreams {
		us = append(us, u)
	}
	sort.Slice(us, func(i, j int) bool {
		if us[i].healthy != us[j].healthy {
			return us[i].healthy
		}
		if us[i].latency != us[j].latency {
			return us[i].latency < us[j].latency
		}
		return us[i].addr < us[j].addr
	})
	return us
}

// reorder recomputes order; b.mu is held.
func (b *Balancer) reorder() {
	b.order = b.order[:0]
	for _, u := range b.ordered() {
		b.order = append(b.order, u.addr)
	}
}

func (b *Balancer) mark(addr string, healthy bool, latency time.Duration, why error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.upstreams[addr]
	if !ok {
		return
	}
	if healthy {
		if u.checked && u.latency > 0 {
			u.latency = (u.latency*3 + latency) / 4
		} else {
			u.latency = latency
		}
	}
	u.checked = true
	if u.healthy != healthy {
		if healthy {
			b.log.Info("lb: upstream healthy", "upstream", addr)
		} else {
			b.log.Warn("lb: upstream down", "upstream", addr, "error", why)
		}
	}
	u.healthy = healthy
	b.metrics.health(addr, healthy)
	b.reorder()
}

// Run serves on ln and checks the upstreams until ctx ends. Connections in
// flight are closed when it returns.
func (b *Balancer) Run(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { b.checkLoop(ctx) })
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	b.log.Info("lb: listening", "address", ln.Addr().String())
	for {
		conn, err := ln.Accept()
		if err != nil {
			cancel()
			wg.Wait()
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("lb: accept: %w", err)
		}
		wg.Go(func() { b.proxy(ctx, conn) })
	}
}

// checkLoop connects to every upstream every CheckInterval.
func (b *Balancer) checkLoop(ctx context.Context) {
	t := time.NewTicker(b.opts.CheckInterval)
	defer t.Stop()
	for {
		b.mu.Lock()
		addrs := make([]string, 0, len(b.upstreams))
		for a := range b.upstreams {
			addrs = append(addrs, a)
		}
		b.mu.Unlock()
		var wg sync.WaitGroup
		for _, a := range addrs {
			wg.Go(func() {
				d := net.Dialer{Timeout: b.opts.DialTimeout}
				start := time.Now()
				c, err := d.DialContext(ctx, "tcp", a)
				if err != nil {
					if ctx.Err() == nil {
						b.mark(a, false, 0, err)
					}
					return
				}
				b.mark(a, true, time.Since(start), nil)
				c.Close()
			})
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// dial connects to the best upstream, moving on to the next when a dial
// fails (and marking that one down).
func (b *Balancer) dial(ctx context.Context) (net.Conn, string, error) {
	b.mu.Lock()
	order := slices.Clone(b.order)
	b.mu.Unlock()
	var errs []error
	// No TCP keep-alive: the clients (kube components) keep their own
	// HTTP/2 pings, and a dead upstream is caught by the checks.
	d := net.Dialer{Timeout: b.opts.DialTimeout, KeepAlive: -1}
	for _, addr := range order {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c, addr, nil
		}
		b.mark(addr, false, 0, err)
		errs = append(errs, err)
	}
	if len(order) == 0 {
		return nil, "", errors.New("lb: no upstream known")
	}
	return nil, "", fmt.Errorf("lb: every upstream failed: %w", errors.Join(errs...))
}

// proxy copies both ways between the client and an upstream.
func (b *Balancer) proxy(ctx context.Context, client net.Conn) {
	defer client.Close()
	up, addr, err := b.dial(ctx)
	if err != nil {
		b.metrics.failed.Inc()
		b.log.Warn("lb: connection refused to the client", "error", err)
		return
	}
	defer up.Close()
	// A stopping balancer closes what is in flight: a long watch through
	// it (a pod's client keeps going while the node reboots) must not hold
	// the stop up.
	stop := context.AfterFunc(ctx, func() {
		client.Close()
		up.Close()
	})
	defer stop()
	b.metrics.conn(addr)
	defer b.metrics.active.Dec()
	// One copy runs here, the other in one more goroutine; each half-closes
	// its destination when its source ends.
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(up, client)
	}()
	copyHalf(client, up)
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// bufPool holds copy buffers. API traffic is mostly small messages, for
// which a plain read/write beats splice(2) and its pipe (io.Copy between two
// TCP connections would splice): measured in docs/benchmarks.md.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyHalf copies src to dst and then half-closes dst.
func copyHalf(dst, src net.Conn) {
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	_, _ = io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *buf)
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// Listen opens the balancer's listener. Its clients are the node's own
// components over loopback, so accepted connections get no TCP keep-alive
// (four fewer system calls per connection).
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(ctx, "tcp", addr)
}

// Hosts turns hosts into upstream addresses on port, without repeats.
func Hosts(hosts []string, port string) []string {
	var out []string
	for _, h := range hosts {
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
		a := net.JoinHostPort(h, port)
		if h != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
