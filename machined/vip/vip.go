// Package vip holds the control plane's shared virtual IP: one healthy
// control-plane node at a time, elected through etcd, adds the address to its
// link and announces it with gratuitous ARP.
//
// Ownership is fenced by time, not by the etcd key alone (an etcd lock is no
// mutual exclusion when a holder stalls). The holder renews its claim every
// RenewInterval with a compare-and-swap on the key's revision; the kernel
// address carries a 1 s valid lifetime that only a renewal acknowledged less
// than refreshWindow ago extends, and the holder removes the address itself
// once renewDeadline has passed since the last acknowledged renewal was sent.
// Another node takes over only after it has seen no change of the key for a
// whole TTL by its own monotonic clock, and only with a compare-and-swap on
// the revision it saw. A frozen, partitioned or dead holder has lost the
// address before that: see docs/vip.md for the arithmetic.
package vip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/desired"
	"github.com/ballast-os/ballast/machined/events"
	"github.com/ballast-os/ballast/pkg/config"
)

// keyPrefix is where claims live: keyPrefix + the VIP.
const keyPrefix = "/ballast/vip/"

// refreshWindow bounds how old the last acknowledged renewal may be for the
// holder to extend the address lifetime: the address then disappears at the
// latest addressLifetime (+ the kernel's check delay) after that.
const refreshWindow = 300 * time.Millisecond

// Options configure a Controller.
type Options struct {
	Logger *slog.Logger
	// Node is this node's name, recorded as the holder.
	Node string
	// Client returns a client of the local etcd member (an error while etcd
	// is not running here).
	Client func() (*clientv3.Client, error)
	// Healthy is the node's local health: a node campaigns only while it
	// holds, and resigns when it fails.
	Healthy func(ctx context.Context) error
	Desired *desired.Config
	Addr    Addresser
	Clock   clock.Clock
	// Registerer receives the VIP metrics (nil: none).
	Registerer prometheus.Registerer
	// Events receives an event when this node acquires or releases the VIP
	// (nil: none).
	Events events.Publisher
}

// Status is what `nodectl get vip` shows.
type Status struct {
	IP, Link string
	// Holder is the node named in the claim ("" when none).
	Holder string
	// Since is when the holder took the VIP (its own clock).
	Since time.Time
	// Lease is the holder's etcd lease, Term the revision of its claim.
	Lease, Term int64
	// Local reports whether this node holds it now.
	Local bool
}

// claim is the value of the VIP key. Renewals rewrite it unchanged.
type claim struct {
	Holder string    `json:"holder"`
	Since  time.Time `json:"since"`
	// Term counts the claims made on this VIP: each new holder's is one
	// more than the claim it replaced.
	Term int64 `json:"term"`
}

// spec is the VIP config the controller follows.
type spec struct {
	link          string
	ip            netip.Addr
	ttl, renew    time.Duration
	renewDeadline time.Duration
}

func specOf(cfg *config.Config) spec {
	if cfg == nil || !cfg.IsControlPlane() {
		return spec{}
	}
	for _, in := range cfg.WithDefaults().Machine.Network.Interfaces {
		if in.VIP == nil {
			continue
		}
		ip, err := netip.ParseAddr(in.VIP.IP)
		if err != nil {
			continue
		}
		ttl, renew := in.VIP.TTL.Std(), in.VIP.RenewInterval.Std()
		return spec{link: in.Interface, ip: ip, ttl: ttl, renew: renew, renewDeadline: ttl - 2*renew}
	}
	return spec{}
}

// Controller runs the VIP election of one node.
type Controller struct {
	opts    Options
	log     *slog.Logger
	clock   clock.Clock
	metrics *vipMetrics

	mu     sync.Mutex
	status Status
	resign chan chan struct{}
}

// New returns a controller; Run starts it.
func New(opts Options) *Controller {
	if opts.Clock == nil {
		opts.Clock = clock.Real()
	}
	if opts.Addr == nil {
		opts.Addr = Netlink{}
	}
	return &Controller{opts: opts, log: opts.Logger, clock: opts.Clock, metrics: newMetrics(opts.Registerer), resign: make(chan chan struct{})}
}

// Status returns what this node knows of the VIP.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Resign gives the VIP up now if this node holds it (before a leave or a
// reset), and returns once the address is gone and the claim deleted, so
// another node takes over at once. The node may campaign again a TTL later
// if it is still healthy (after a leave its etcd member is gone, so it does
// not).
func (c *Controller) Resign(ctx context.Context) {
	done := make(chan struct{})
	// A holder busy with a renewal or a health check takes the request
	// when that is done: wait for it (a leave must not go ahead while this
	// node still answers on the VIP). A node that does not hold the VIP
	// has nothing to give up.
	var notHolding <-chan time.Time
	if !c.Status().Local {
		notHolding = c.clock.After(100 * time.Millisecond)
	}
	select {
	case c.resign <- done:
		select {
		case <-done:
		case <-ctx.Done():
		}
	case <-ctx.Done():
	case <-notHolding:
	}
}

// Run follows the desired config: it campaigns for the configured VIP (on
// control planes), and resigns when the VIP changes or ctx ends.
func (c *Controller) Run(ctx context.Context, out io.Writer) error {
	var cur spec
	var stop context.CancelFunc
	var done chan struct{}
	halt := func() {
		if stop != nil {
			stop()
			<-done
			stop = nil
		}
	}
	c.opts.Desired.Watch(ctx, func(ctx context.Context, cfg *config.Config) {
		s := specOf(cfg)
		if s == cur {
			return
		}
		halt()
		cur = s
		if !s.ip.IsValid() {
			c.setStatus(Status{})
			return
		}
		fmt.Fprintf(out, "campaigning for VIP %s on %s (ttl %s, renew every %s)\n", s.ip, s.link, s.ttl, s.renew)
		cctx, cancel := context.WithCancel(ctx)
		stop, done = cancel, make(chan struct{})
		go func() {
			defer close(done)
			c.campaign(cctx, s)
		}()
	})
	halt()
	return nil
}

func (c *Controller) setStatus(s Status) {
	c.mu.Lock()
	c.status = s
	c.mu.Unlock()
}

func (c *Controller) updateStatus(fn func(*Status)) {
	c.mu.Lock()
	fn(&c.status)
	c.mu.Unlock()
}

// errLost means another node's claim replaced ours.
var errLost = errors.New("the claim was taken over")

// campaign alternates between following and holding until ctx ends.
func (c *Controller) campaign(ctx context.Context, s spec) {
	c.setStatus(Status{IP: s.ip.String(), Link: s.link})
	// An address left by an earlier run of this node (crash) goes first.
	_ = c.opts.Addr.Remove(s.link, s.ip)
	key := keyPrefix + s.ip.String()
	for ctx.Err() == nil {
		cli, err := c.opts.Client()
		if err != nil || c.opts.Healthy(ctx) != nil {
			c.sleep(ctx, s.renew*5)
			continue
		}
		held, err := c.follow(ctx, cli, key, s)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Debug("vip: follow", "error", err)
				c.sleep(ctx, s.renew)
			}
			continue
		}
		if held == nil {
			continue
		}
		c.hold(ctx, cli, key, s, *held)
	}
}

func (c *Controller) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-c.clock.After(d):
	}
}

// holding is a won claim.
type holding struct {
	modRev  int64  // revision of our last write
	claim   []byte // the value every renewal writes again
	term    int64
	lease   clientv3.LeaseID
	sent    time.Time // when the write that won was sent (monotonic)
	waited  time.Duration
	takeVia string
}

// follow watches the claim until this node wins it (nil when it should
// look again, e.g. after a health failure).
func (c *Controller) follow(ctx context.Context, cli *clientv3.Client, key string, s spec) (*holding, error) {
	cctx, cancel := context.WithTimeout(ctx, s.ttl)
	resp, err := cli.Get(cctx, key)
	cancel()
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return c.tryClaim(ctx, cli, key, s, 0, 0, "free", 0)
	}
	kv := resp.Kvs[0]
	var cl claim
	_ = json.Unmarshal(kv.Value, &cl)
	c.updateStatus(func(st *Status) {
		st.Holder, st.Since, st.Lease, st.Term, st.Local = cl.Holder, cl.Since, kv.Lease, cl.Term, false
	})
	term := cl.Term
	if cl.Holder == c.opts.Node {
		// A claim of this node's previous run (it crashed): nobody else
		// holds the address, take it back at once.
		return c.tryClaim(ctx, cli, key, s, kv.ModRevision, term, "restart", 0)
	}
	modRev := kv.ModRevision
	lastChange := c.clock.Now()
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	events := cli.Watch(wctx, key, clientv3.WithRev(modRev+1))
	for {
		expiry := c.clock.NewTimer(s.ttl - c.clock.Now().Sub(lastChange))
		select {
		case <-ctx.Done():
			expiry.Stop()
			return nil, ctx.Err()
		case wr, ok := <-events:
			expiry.Stop()
			if !ok || wr.Err() != nil {
				return nil, fmt.Errorf("watch %s: %v", key, wr.Err())
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					// Resigned: claim it at once.
					return c.tryClaim(ctx, cli, key, s, 0, term, "handover", 0)
				}
				modRev = ev.Kv.ModRevision
				lastChange = c.clock.Now()
				var cl claim
				_ = json.Unmarshal(ev.Kv.Value, &cl)
				term = cl.Term
				c.updateStatus(func(st *Status) { st.Holder, st.Since, st.Lease, st.Term = cl.Holder, cl.Since, ev.Kv.Lease, cl.Term })
			}
		case <-expiry.C():
			// No renewal for a whole TTL by this node's clock. When the
			// holder was also etcd's leader, etcd may still be electing a
			// new one: wait for local health briefly rather than start
			// over (the compare-and-swap fails anyway if the holder
			// renewed meanwhile).
			for waited := time.Duration(0); c.opts.Healthy(ctx) != nil; waited += s.renew {
				if waited > 5*s.ttl || ctx.Err() != nil {
					return nil, nil
				}
				c.sleep(ctx, s.renew)
			}
			return c.tryClaim(ctx, cli, key, s, modRev, term, "takeover", c.clock.Now().Sub(lastChange))
		}
	}
}

// tryClaim writes this node's claim if the key is still at modRev (0:
// absent); prevTerm is the term of the claim it replaces.
func (c *Controller) tryClaim(ctx context.Context, cli *clientv3.Client, key string, s spec, modRev, prevTerm int64, via string, waited time.Duration) (*holding, error) {
	cctx, cancel := context.WithTimeout(ctx, s.ttl)
	defer cancel()
	lease, err := cli.Grant(cctx, leaseSeconds(s.ttl))
	if err != nil {
		return nil, fmt.Errorf("grant lease: %w", err)
	}
	now := time.Now().UTC()
	cl := claim{Holder: c.opts.Node, Since: now, Term: prevTerm + 1}
	val, _ := json.Marshal(cl)
	cmp := clientv3.Compare(clientv3.ModRevision(key), "=", modRev)
	if modRev == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	sent := c.clock.Now()
	resp, err := cli.Txn(cctx).If(cmp).Then(clientv3.OpPut(key, string(val), clientv3.WithLease(lease.ID))).Commit()
	if err != nil || !resp.Succeeded {
		_, _ = cli.Revoke(context.WithoutCancel(cctx), lease.ID)
		if err != nil {
			return nil, fmt.Errorf("claim %s: %w", key, err)
		}
		return nil, nil // someone else was first, or the holder renewed
	}
	c.updateStatus(func(st *Status) {
		st.Holder, st.Since, st.Lease, st.Term, st.Local = c.opts.Node, now, int64(lease.ID), cl.Term, true
	})
	return &holding{modRev: resp.Header.Revision, claim: val, term: cl.Term, lease: lease.ID, sent: sent, waited: waited, takeVia: via}, nil
}

// leaseSeconds is the lease of a claim: it only cleans up after a cluster
// whose every node died; the TTL above decides takeovers.
func leaseSeconds(ttl time.Duration) int64 {
	return int64(2*ttl/time.Second) + 2
}

// hold keeps the VIP until ctx ends, the claim is lost, renewals stop
// being acknowledged for renewDeadline, local health fails, or Resign.
func (c *Controller) hold(ctx context.Context, cli *clientv3.Client, key string, s spec, h holding) {
	log := c.log.With("vip", s.ip.String(), "link", s.link, "term", h.term)
	if err := c.opts.Addr.Add(s.link, s.ip); err != nil {
		log.Error("vip: cannot add the address; giving the claim up", "error", err)
		c.release(cli, key, s, h)
		return
	}
	c.metrics.took(h.takeVia, h.waited+c.clock.Now().Sub(h.sent))
	log.Info("vip: acquired", "via", h.takeVia, "waited", h.waited.String())
	c.publish("acquired "+s.ip.String()+" on "+s.link, "vip", s.ip.String(), "action", "acquired", "via", h.takeVia,
		"term", strconv.FormatInt(h.term, 10))
	c.announce(s)
	keep, cancelKeep := context.WithCancel(ctx)
	defer cancelKeep()
	if ka, err := cli.KeepAlive(keep, h.lease); err == nil {
		go func() {
			for range ka { // drain the keep-alive answers
			}
		}()
	}
	lastAck := h.sent
	announced := 1
	ticker := c.clock.NewTimer(s.renew)
	defer ticker.Stop()
	healthFails := 0
	for {
		select {
		case <-ctx.Done():
			c.drop(s, log, "shutdown")
			c.release(cli, key, s, h)
			return
		case done := <-c.resign:
			c.drop(s, log, "resigned")
			c.release(cli, key, s, h)
			close(done)
			c.sleep(ctx, s.ttl) // let another node take it
			return
		case <-ticker.C():
		}
		ticker.Reset(s.renew)
		// Self-fence first: never act on an old decision.
		if c.clock.Now().Sub(lastAck) > s.renewDeadline {
			c.drop(s, log, "renewals not acknowledged for "+s.renewDeadline.String())
			return
		}
		sent := c.clock.Now()
		rctx, cancel := context.WithTimeout(ctx, s.renewDeadline-sent.Sub(lastAck))
		resp, err := cli.Txn(rctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", h.modRev)).
			Then(clientv3.OpPut(key, string(h.claim), clientv3.WithLease(h.lease))).Commit()
		cancel()
		switch {
		case err != nil:
			log.Warn("vip: renewal failed", "error", err)
			continue
		case !resp.Succeeded:
			c.drop(s, log, errLost.Error())
			return
		}
		h.modRev = resp.Header.Revision
		lastAck = sent
		// Extend the address only on a fresh acknowledgement, and undo it
		// when this goroutine was held up around the call.
		if c.clock.Now().Sub(sent) < refreshWindow {
			if err := c.opts.Addr.Add(s.link, s.ip); err != nil {
				log.Warn("vip: cannot refresh the address", "error", err)
			}
			if c.clock.Now().Sub(sent) >= refreshWindow {
				c.drop(s, log, "stalled while refreshing")
				return
			}
		}
		if announced < 3 { // a few more announcements for lossy segments
			announced++
			c.announce(s)
		}
		if err := c.opts.Healthy(ctx); err != nil {
			healthFails++
			if healthFails >= 3 {
				c.drop(s, log, "local health failed: "+err.Error())
				c.release(cli, key, s, h)
				c.sleep(ctx, s.ttl)
				return
			}
		} else {
			healthFails = 0
		}
	}
}

func (c *Controller) announce(s spec) {
	if err := c.opts.Addr.Announce(s.link, s.ip); err != nil {
		c.log.Warn("vip: gratuitous ARP failed", "error", err)
	}
}

// drop removes the address: from here on this node does not answer on it.
func (c *Controller) drop(s spec, log *slog.Logger, why string) {
	if err := c.opts.Addr.Remove(s.link, s.ip); err != nil {
		log.Error("vip: cannot remove the address", "error", err)
	}
	c.updateStatus(func(st *Status) { st.Local = false })
	c.metrics.holder.Set(0)
	log.Info("vip: released", "reason", why)
	c.publish("released "+s.ip.String()+": "+why, "vip", s.ip.String(), "action", "released", "reason", why)
}

// publish sends a VIP event when the controller has a Publisher.
func (c *Controller) publish(msg string, fields ...string) {
	if c.opts.Events != nil {
		c.opts.Events.Publish(events.VIP, "vip", msg, fields...)
	}
}

// release deletes the claim if it is still ours (revoking its lease), so
// that the others take over at once instead of after the TTL.
func (c *Controller) release(cli *clientv3.Client, key string, s spec, h holding) {
	ctx, cancel := context.WithTimeout(context.Background(), s.ttl)
	defer cancel()
	_, _ = cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", h.modRev)).Then(clientv3.OpDelete(key)).Commit()
	_, _ = cli.Revoke(ctx, h.lease)
	c.updateStatus(func(st *Status) { st.Holder, st.Lease, st.Term = "", 0, 0 })
}
