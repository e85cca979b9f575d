package vip

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ballast-os/ballast/machined/desired"
	"github.com/ballast-os/ballast/machined/etcd"
	"github.com/ballast-os/ballast/machined/events"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/gen"
	"github.com/ballast-os/ballast/pkg/pki"
	"github.com/ballast-os/ballast/pkg/secrets"
)

// timeline records the address events of every node in one order.
type timeline struct {
	mu     sync.Mutex
	events []event
}

type event struct {
	node, what string
	at         time.Time
}

func (tl *timeline) add(node, what string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.events = append(tl.events, event{node, what, time.Now()})
}

// holders replays the timeline and reports the largest number of nodes
// that carried the address at once, and when each node last added it.
func (tl *timeline) maxHolders() int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	has := map[string]bool{}
	most := 0
	for _, e := range tl.events {
		switch e.what {
		case "add":
			has[e.node] = true
		case "remove":
			delete(has, e.node)
		}
		most = max(most, len(has))
	}
	return most
}

// last returns the index and time of node's last event of kind what after
// index from (-1: none).
func (tl *timeline) last(node, what string, from int) (int, time.Time) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	idx, at := -1, time.Time{}
	for i := from; i < len(tl.events); i++ {
		if e := tl.events[i]; e.node == node && e.what == what {
			idx, at = i, e.at
		}
	}
	return idx, at
}

func (tl *timeline) len() int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return len(tl.events)
}

func (tl *timeline) has(node string) bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	h := false
	for _, e := range tl.events {
		if e.node == node {
			h = e.what == "add"
		}
	}
	return h
}

// fakeAddr is an Addresser that records into a timeline. Add of an address
// already present is a lifetime refresh, recorded as "add" too.
type fakeAddr struct {
	node string
	tl   *timeline
}

func (f fakeAddr) Add(string, netip.Addr) error      { f.tl.add(f.node, "add"); return nil }
func (f fakeAddr) Remove(string, netip.Addr) error   { f.tl.add(f.node, "remove"); return nil }
func (f fakeAddr) Announce(string, netip.Addr) error { return nil }

// startEtcd runs a real one-member etcd and returns a function that makes
// a separate client (each controller gets its own, so one can be cut off).
func startEtcd(t *testing.T, ip string) (*config.Config, func() *clientv3.Client) {
	t.Helper()
	b, err := secrets.Generate()
	if err != nil {
		t.Fatal(err)
	}
	out, err := gen.Generate(gen.Options{ClusterName: "vipunit", Endpoint: "https://" + ip + ":6443", Secrets: b,
		ControlPlanePatches: []string{`{"machine":{"network":{"interfaces":[{"interface":"eth0","vip":{"ip":"10.99.0.1","ttl":"1500ms","renewInterval":"100ms"}}]}}}`}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(out.ControlPlane)
	if err != nil {
		t.Fatal(err)
	}
	d := desired.New()
	d.Set(cfg)
	dir := t.TempDir()
	m := etcd.New(etcd.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Name: "vipunit-cp1", AdvertiseIP: ip,
		DataDir: filepath.Join(dir, "etcd"), PKIDir: filepath.Join(dir, "pki"), SnapshotDir: filepath.Join(dir, "snaps"), Desired: d})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("etcd did not stop")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for m.Bootstrap(ctx) != nil && m.Healthy(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("etcd never bootstrapped")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for m.Healthy(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("etcd never healthy")
		}
		time.Sleep(50 * time.Millisecond)
	}
	caPEM, crt, key, eps, err := m.ClientCert()
	if err != nil {
		t.Fatal(err)
	}
	newClient := func() *clientv3.Client {
		cert, err := tls.X509KeyPair(crt, key)
		if err != nil {
			t.Fatal(err)
		}
		pool, err := pki.Pool(caPEM)
		if err != nil {
			t.Fatal(err)
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
			TLS: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		return cli
	}
	return cfg, newClient
}

// node is one controller under test.
type node struct {
	c      *Controller
	cli    *clientv3.Client
	cancel context.CancelFunc
	done   chan struct{}
	// slowHealth makes each health check take this long (nanoseconds).
	slowHealth *atomic.Int64
	// events are the node's VIP events.
	events *events.Ring
}

// vipActions lists the node's VIP events' actions, in order.
func (n *node) vipActions() []string {
	var out []string
	for _, ev := range n.events.List(time.Time{}, 0) {
		if ev.Kind == events.VIP {
			out = append(out, ev.Fields["action"])
		}
	}
	return out
}

func startNode(t *testing.T, name string, cfg *config.Config, cli *clientv3.Client, tl *timeline) *node {
	t.Helper()
	d := desired.New()
	d.Set(cfg)
	slow := &atomic.Int64{}
	healthy := func(ctx context.Context) error {
		time.Sleep(time.Duration(slow.Load()))
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := cli.Get(cctx, "health")
		return err
	}
	ring := events.New(100, nil)
	c := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Node: name,
		Client: func() (*clientv3.Client, error) { return cli, nil }, Healthy: healthy, Desired: d, Addr: fakeAddr{name, tl},
		Events: ring})
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{c: c, cli: cli, cancel: cancel, done: make(chan struct{}), slowHealth: slow, events: ring}
	go func() { defer close(n.done); _ = c.Run(ctx, io.Discard) }()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
	}
}

func waitUntil(t *testing.T, what string, fn func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Now()
}

// TestElectionAndFencing runs two controllers against a real etcd: one
// holder; a graceful stop hands over at once; a holder cut off from etcd
// (its client closed: a partition) removes the address by itself before the
// other adds it, a TTL after the last renewal it saw. The timeline of
// address events never has two holders.
func TestElectionAndFencing(t *testing.T) {
	cfg, newClient := startEtcd(t, "127.0.0.35")
	tl := &timeline{}
	a := startNode(t, "a", cfg, newClient(), tl)
	waitUntil(t, "a to hold the VIP", func() bool { return tl.has("a") })
	b := startNode(t, "b", cfg, newClient(), tl)
	waitUntil(t, "b to see a as the holder", func() bool { return b.c.Status().Holder == "a" })
	if st := a.c.Status(); !st.Local || st.Term != 1 || st.Lease == 0 {
		t.Fatalf("a's status %+v: want local, term 1, a lease", st)
	}

	// Graceful: a stops, b takes over at once (well under the TTL).
	start := time.Now()
	a.stop()
	took := waitUntil(t, "b to take over after a resigned", func() bool { return tl.has("b") }).Sub(start)
	if took > 750*time.Millisecond {
		t.Errorf("graceful handover took %s, want well under the 1.5s TTL", took)
	}
	if st := b.c.Status(); st.Term != 2 || st.Holder != "b" {
		t.Fatalf("b's status after the handover: %+v", st)
	}
	// Each move is an event on both sides (nodectl events).
	if got := fmt.Sprint(a.vipActions()); got != "[acquired released]" {
		t.Errorf("a's VIP events %s, want [acquired released]", got)
	}
	if got := fmt.Sprint(b.vipActions()); got != "[acquired]" {
		t.Errorf("b's VIP events %s, want [acquired]", got)
	}

	// Partition: c joins, then b (the holder) loses etcd.
	c := startNode(t, "c", cfg, newClient(), tl)
	waitUntil(t, "c to see b as the holder", func() bool { return c.c.Status().Holder == "b" })
	cut, mark := time.Now(), tl.len()
	b.cli.Close()
	waitUntil(t, "b to drop the VIP and c to take it over", func() bool { return !tl.has("b") && tl.has("c") })
	// The order in which the address events happened (recorded by the
	// fake address as each controller acted), not the order we noticed.
	ri, removed := tl.last("b", "remove", mark)
	ai, added := tl.last("c", "add", mark)
	if ri < 0 || ai < 0 || ri > ai {
		t.Fatalf("after the cut: b removed the VIP at event %d (%s), c added it at event %d (%s): c must come second", ri, removed.Sub(cut), ai, added.Sub(cut))
	}
	t.Logf("partition: b dropped the VIP %s after the cut, c took it %s after", removed.Sub(cut).Round(time.Millisecond), added.Sub(cut).Round(time.Millisecond))
	if n := tl.maxHolders(); n != 1 {
		t.Fatalf("the address timeline had %d holders at once", n)
	}
}

// TestResignWaitsForABusyHolder: a Resign that arrives while the holder is
// busy (here: a slow health check after a renewal) waits for it and returns
// only once the address is gone — it used to give up after 100 ms, and a
// leave went ahead while the node still answered on the VIP.
func TestResignWaitsForABusyHolder(t *testing.T) {
	cfg, newClient := startEtcd(t, "127.0.0.36")
	tl := &timeline{}
	a := startNode(t, "a", cfg, newClient(), tl)
	waitUntil(t, "a to hold the VIP", func() bool { return tl.has("a") && a.c.Status().Local })
	a.slowHealth.Store(int64(400 * time.Millisecond))
	time.Sleep(150 * time.Millisecond) // the holder is now inside a slow check
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	a.c.Resign(ctx)
	if tl.has("a") {
		t.Fatalf("Resign returned after %s with the address still on a", time.Since(start).Round(time.Millisecond))
	}
	if _, at := tl.last("a", "remove", 0); at.IsZero() || at.After(time.Now()) {
		t.Fatalf("no removal recorded before Resign returned")
	}
}
