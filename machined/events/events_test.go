package events

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
)

func TestListKeepsTheLastEvents(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	r := New(4, clk)
	for i := range 6 { // 6 into a ring of 4: events 3..6 stay
		r.Publish(Service, "kubelet", fmt.Sprint("event ", i+1), "state", "Running")
		clk.Advance(time.Second)
	}
	start := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		since time.Time
		tail  int
		want  []uint64
	}{
		{"all kept", time.Time{}, 0, []uint64{3, 4, 5, 6}},
		{"tail", time.Time{}, 2, []uint64{5, 6}},
		{"tail larger than kept", time.Time{}, 10, []uint64{3, 4, 5, 6}},
		{"since", start.Add(4 * time.Second), 0, []uint64{5, 6}},
		{"since and tail", start.Add(3 * time.Second), 1, []uint64{6}},
		{"since after the last", start.Add(time.Hour), 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []uint64
			for _, ev := range r.List(tc.since, tc.tail) {
				got = append(got, ev.ID)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("IDs %v, want %v", got, tc.want)
			}
		})
	}
	ev := r.List(time.Time{}, 1)[0]
	if ev.Kind != Service || ev.Source != "kubelet" || ev.Message != "event 6" || ev.Fields["state"] != "Running" {
		t.Fatalf("last event %+v", ev)
	}
	ev.Fields["state"] = "changed"
	if r.List(time.Time{}, 1)[0].Fields["state"] != "Running" {
		t.Fatal("a listed event shares its fields with the ring")
	}
}

func TestPublishPairsFields(t *testing.T) {
	r := New(2, nil)
	r.Publish(VIP, "vip", "acquired", "vip", "10.5.0.100", "odd")
	f := r.List(time.Time{}, 0)[0].Fields
	if len(f) != 2 || f["vip"] != "10.5.0.100" || f["odd"] != "" {
		t.Fatalf("fields %v", f)
	}
	var nilRing *Ring
	nilRing.Publish(VIP, "vip", "dropped") // a nil Ring drops events
}

func TestFollowSendsKeptThenNew(t *testing.T) {
	r := New(10, nil)
	r.Publish(ConfigApplied, "config", "one")
	r.Publish(ConfigApplied, "config", "two")
	ctx, cancel := context.WithCancel(context.Background())
	ch := r.Follow(ctx, time.Time{}, 1)
	if ev := recv(t, ch); ev.Message != "two" {
		t.Fatalf("first followed event %q, want the kept tail \"two\"", ev.Message)
	}
	r.Publish(VIP, "vip", "three")
	if ev := recv(t, ch); ev.Message != "three" || ev.ID != 3 {
		t.Fatalf("live event %+v", ev)
	}
	cancel()
	for range ch { // closed after ctx ends
	}
}

func TestASlowFollowerLosesEventsNotThePublisher(t *testing.T) {
	r := New(10, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := r.Follow(ctx, time.Time{}, 0)
	done := make(chan struct{})
	go func() { // nobody reads ch meanwhile: Publish must not block
		defer close(done)
		for i := range followQueue + 50 {
			r.Publish(Service, "s", fmt.Sprint(i))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a follower that does not read")
	}
	// The forwarding goroutine may hold one event taken before the
	// overflow; after it, the LOST event counts what was dropped.
	var lost *Event
	var after []string
	for len(after) < followQueue {
		ev := recv(t, ch)
		if ev.Kind == Lost {
			lost = &ev
			continue
		}
		if lost != nil {
			after = append(after, ev.Message)
		}
	}
	if lost == nil || lost.Fields["missed"] == "" || lost.Fields["missed"] == "0" {
		t.Fatalf("no LOST event with a count: %+v", lost)
	}
	if after[len(after)-1] != fmt.Sprint(followQueue+49) {
		t.Fatalf("last event %q, want the newest", after[len(after)-1])
	}
}

func recv(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("follow channel closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return Event{}
}
