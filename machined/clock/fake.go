package clock

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Fake is a manually driven Clock for tests. Time only moves when Advance is
// called. The zero value is not usable; create one with NewFake.
type Fake struct {
	mu      sync.Mutex
	cond    *sync.Cond
	now     time.Time
	pending []*fakeTimer // armed timers, in creation order
}

var _ Clock = (*Fake)(nil)

// NewFake returns a Fake clock whose current time is start.
func NewFake(start time.Time) *Fake {
	f := &Fake{now: start}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// Now returns the fake current time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that receives the fake time once Advance has moved
// the clock by at least d. A pending After counts as a waiter for BlockUntil.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	return f.NewTimer(d).C()
}

// NewTimer returns a Timer that fires once Advance has moved the clock by at
// least d. A timer with d <= 0 fires immediately.
func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armLocked(t, d)
	return t
}

// Advance moves the clock forward by d and fires, in deadline order, every
// timer that is due. Timers created by goroutines woken by Advance are
// relative to the new time, so one large Advance does not cascade through a
// chain of successive timers.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	var due []*fakeTimer
	kept := f.pending[:0]
	for _, t := range f.pending {
		if !t.when.After(f.now) {
			due = append(due, t)
		} else {
			kept = append(kept, t)
		}
	}
	clear(f.pending[len(kept):])
	f.pending = kept
	sort.SliceStable(due, func(i, j int) bool { return due[i].when.Before(due[j].when) })
	for _, t := range due {
		t.armed = false
		t.fireLocked(f.now)
	}
	if len(due) > 0 {
		f.cond.Broadcast()
	}
}

// Pending returns the number of armed timers and After waiters.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pending)
}

// BlockUntil blocks until at least n timers or After waiters are pending. It
// lets a test wait for the code under test to arm its timers before calling
// Advance.
func (f *Fake) BlockUntil(n int) {
	_ = f.BlockUntilContext(context.Background(), n)
}

// BlockUntilContext is BlockUntil with a way out: it returns ctx.Err() if ctx
// ends first.
func (f *Fake) BlockUntilContext(ctx context.Context, n int) error {
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.cond.Broadcast()
	})
	defer stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.pending) < n {
		if err := ctx.Err(); err != nil {
			return err
		}
		f.cond.Wait()
	}
	return nil
}

func (f *Fake) armLocked(t *fakeTimer, d time.Duration) {
	if d <= 0 {
		t.fireLocked(f.now)
		return
	}
	t.when = f.now.Add(d)
	t.armed = true
	f.pending = append(f.pending, t)
	f.cond.Broadcast()
}

// disarmLocked removes t from the pending set and drops any undelivered
// value, reporting whether t was armed.
func (f *Fake) disarmLocked(t *fakeTimer) bool {
	select {
	case <-t.c:
	default:
	}
	if !t.armed {
		return false
	}
	t.armed = false
	for i, p := range f.pending {
		if p == t {
			f.pending = append(f.pending[:i], f.pending[i+1:]...)
			break
		}
	}
	f.cond.Broadcast()
	return true
}

type fakeTimer struct {
	f     *Fake
	c     chan time.Time
	when  time.Time // guarded by f.mu
	armed bool      // guarded by f.mu
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return t.f.disarmLocked(t)
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	was := t.f.disarmLocked(t)
	t.f.armLocked(t, d)
	return was
}

// fireLocked delivers now without blocking; c has room for one value and
// any older undelivered value is dropped on Stop/Reset.
func (t *fakeTimer) fireLocked(now time.Time) {
	select {
	case t.c <- now:
	default:
	}
}
