package network

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/ballast-os/ballast/machined/clock"
)

// fakeLeaseOps records the DHCP client's actions; renewals answer from
// answers (nil: the server is silent).
type fakeLeaseOps struct {
	c       *Controller
	clk     *clock.Fake
	mu      sync.Mutex
	answers []bool
	events  []string // "renew@<seconds> <state>", "bind", "unbind@<seconds>"
}

func (f *fakeLeaseOps) log(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, s)
}

func (f *fakeLeaseOps) since() string { return f.clk.Now().Sub(dhcpEpoch).String() }

func (f *fakeLeaseOps) renew(_ context.Context, name string, lease *nclient4.Lease) (*nclient4.Lease, error) {
	f.log("renew@" + f.since() + " " + f.c.snapshot(name).state)
	f.mu.Lock()
	ok := len(f.answers) > 0 && f.answers[0]
	if len(f.answers) > 0 {
		f.answers = f.answers[1:]
	}
	f.mu.Unlock()
	if !ok {
		return nil, errors.New("i/o timeout")
	}
	return lease, nil
}

func (f *fakeLeaseOps) bind(name string, _ *nclient4.Lease, state string, _ io.Writer) error {
	f.log("bind@" + f.since())
	setLease(f.c, name, f.clk.Now())
	return nil
}

func (f *fakeLeaseOps) unbind(name string, _ io.Writer) {
	f.log("unbind@" + f.since())
	f.c.mu.Lock()
	f.c.leases[name] = &leaseState{state: "discovering"}
	f.c.mu.Unlock()
}

var dhcpEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// setLease binds a lease of 80 s with T1 40 s and T2 70 s at now.
func setLease(c *Controller, name string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leases[name] = &leaseState{address: &net.IPNet{IP: net.IPv4(10, 0, 0, 5), Mask: net.CIDRMask(24, 32)}, obtained: now,
		renewAt: now.Add(40 * time.Second), rebindAt: now.Add(70 * time.Second), expires: now.Add(80 * time.Second), state: "bound"}
}

// TestLeaseStateMachine drives keep (renewal at T1, retries at half the
// time left to T2 and then to expiry, rebinding after T2, unbinding at
// expiry) on a fake clock, with the wire and the link replaced.
func TestLeaseStateMachine(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []bool
		until   time.Duration // advance the clock this far
		want    []string
	}{
		{name: "renewed at T1", answers: []bool{true}, until: 40 * time.Second,
			want: []string{"renew@40s renewing", "bind@40s"}},
		// Retries at half the time left to T2 (70 s), at least 1 s apart:
		// 55, 62.5, 66.25, 68.125, 69.125; then rebinding, at half the time
		// left to expiry (80 s). Times are on the test's 125 ms ticks.
		{name: "retried at half the time left, rebinding after T2, renewed", answers: []bool{false, false, false, false, false, false, true}, until: 72 * time.Second,
			want: []string{"renew@40s renewing", "renew@55s renewing", "renew@1m2.5s renewing", "renew@1m6.25s renewing", "renew@1m8.125s renewing",
				"renew@1m9.125s renewing", "renew@1m10.125s rebinding", "bind@1m10.125s"}},
		{name: "never answered: expires and unbinds", until: 82 * time.Second,
			want: []string{"renew@40s renewing", "renew@55s renewing", "renew@1m2.5s renewing", "renew@1m6.25s renewing", "renew@1m8.125s renewing",
				"renew@1m9.125s renewing", "renew@1m10.125s rebinding", "renew@1m15.125s rebinding", "renew@1m17.625s rebinding", "renew@1m18.875s rebinding",
				"renew@1m19.875s rebinding", "unbind@1m20.875s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(dhcpEpoch)
			c := New(Options{Clock: clk})
			f := &fakeLeaseOps{c: c, clk: clk, answers: tc.answers}
			c.ops = f
			setLease(c, "eth0", clk.Now())
			ctx, cancel := context.WithCancel(context.Background())
			running, stopped := context.WithCancel(context.Background())
			go func() { defer stopped(); c.keep(ctx, "eth0", &nclient4.Lease{}, io.Discard) }()
			// Step in 125 ms ticks so that every timer fires at its time.
			for elapsed := time.Duration(0); elapsed < tc.until; elapsed += 125 * time.Millisecond {
				if clk.BlockUntilContext(running, 1) != nil {
					break // keep returned
				}
				clk.Advance(125 * time.Millisecond)
			}
			cancel()
			<-running.Done()
			f.mu.Lock()
			defer f.mu.Unlock()
			if !slices.Equal(f.events, tc.want) {
				t.Fatalf("events\n got %q\nwant %q", f.events, tc.want)
			}
		})
	}
}
