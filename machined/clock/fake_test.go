package clock_test

import (
	"context"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
)

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func fired(c <-chan time.Time) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestFakeTimerFiresOnlyWhenDue(t *testing.T) {
	tests := []struct {
		name    string
		timer   time.Duration
		advance []time.Duration
		want    bool
	}{
		{"not yet due", time.Second, []time.Duration{999 * time.Millisecond}, false},
		{"exactly due", time.Second, []time.Duration{time.Second}, true},
		{"due after two steps", time.Second, []time.Duration{500 * time.Millisecond, 500 * time.Millisecond}, true},
		{"overdue", time.Second, []time.Duration{time.Hour}, true},
		{"zero duration fires at once", 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := clock.NewFake(epoch)
			tm := f.NewTimer(tt.timer)
			for _, d := range tt.advance {
				f.Advance(d)
			}
			if got := fired(tm.C()); got != tt.want {
				t.Fatalf("fired = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFakeNowAndAfter(t *testing.T) {
	f := clock.NewFake(epoch)
	c := f.After(2 * time.Second)
	f.Advance(2 * time.Second)
	if got := f.Now(); !got.Equal(epoch.Add(2 * time.Second)) {
		t.Fatalf("Now = %v", got)
	}
	select {
	case v := <-c:
		if !v.Equal(epoch.Add(2 * time.Second)) {
			t.Fatalf("After delivered %v", v)
		}
	default:
		t.Fatal("After did not fire")
	}
	if f.Pending() != 0 {
		t.Fatalf("Pending = %d, want 0", f.Pending())
	}
}

func TestFakeStopAndReset(t *testing.T) {
	f := clock.NewFake(epoch)
	tm := f.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop of armed timer returned false")
	}
	if tm.Stop() {
		t.Fatal("second Stop returned true")
	}
	f.Advance(time.Hour)
	if fired(tm.C()) {
		t.Fatal("stopped timer fired")
	}

	if tm.Reset(time.Second) {
		t.Fatal("Reset of stopped timer returned true")
	}
	f.Advance(time.Second)
	// Reset after firing drops the undelivered value.
	if tm.Reset(time.Minute) {
		t.Fatal("Reset of fired timer returned true")
	}
	if fired(tm.C()) {
		t.Fatal("stale value delivered after Reset")
	}
	f.Advance(time.Minute)
	if !fired(tm.C()) {
		t.Fatal("reset timer did not fire")
	}
}

func TestFakeBlockUntil(t *testing.T) {
	f := clock.NewFake(epoch)
	got := make(chan struct{})
	go func() {
		<-f.After(time.Second)
		close(got)
	}()
	f.BlockUntil(1)
	f.Advance(time.Second)
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("After did not fire when the fake clock advanced")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.BlockUntilContext(ctx, 5); err == nil {
		t.Fatal("BlockUntilContext with cancelled ctx returned nil")
	}
}

func TestRealClock(t *testing.T) {
	c := clock.Real()
	tm := c.NewTimer(time.Millisecond)
	select {
	case <-tm.C():
	case <-time.After(10 * time.Second):
		t.Fatal("a 1ms timer did not fire in 10s")
	}
	if tm.Stop() {
		t.Fatal("Stop after fire returned true")
	}
	select {
	case <-c.After(0):
	case <-time.After(10 * time.Second):
		t.Fatal("After(0) did not fire in 10s")
	}
	if c.Now().IsZero() {
		t.Fatal("zero Now")
	}
}
