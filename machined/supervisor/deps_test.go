package supervisor_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/supervisor"
)

func TestStartInDependencyOrder(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	a, b, c := newFake("a"), newFake("b"), newFake("c")
	// Added in reverse to show that order comes from dependencies.
	h.add(c.spec("b"))
	h.add(b.spec("a"))
	h.add(a.spec())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := h.sup.Subscribe(ctx)
	h.run()

	// Each service must be Running before its dependent starts: check the
	// global event order.
	var order []string
	timeout := time.After(safety)
	for len(order) < 6 {
		select {
		case ev := <-events:
			if ev.State == supervisor.StateStarting || ev.State == supervisor.StateRunning {
				order = append(order, ev.ID+":"+string(ev.State))
			}
		case <-timeout:
			t.Fatalf("events so far: %v", order)
		}
	}
	want := []string{"a:Starting", "a:Running", "b:Starting", "b:Running", "c:Starting", "c:Running"}
	if !slices.Equal(order, want) {
		t.Fatalf("event order %v, want %v", order, want)
	}
	for _, f := range []*fakeService{a, b, c} {
		f.expectStart(t, 1)
	}
}

func TestDependentWaitsForHealthCheck(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	started := &recorder{}
	a, b := newFake("a"), newFake("b")
	a.started, b.started = started, started
	var healthy atomic.Bool
	specA := a.spec()
	specA.Health = &supervisor.HealthCheck{
		Interval: 5 * time.Second,
		Check: func(context.Context) error {
			if !healthy.Load() {
				return errors.New("not listening yet")
			}
			return nil
		},
	}
	h.add(specA)
	h.add(b.spec("a"))
	h.run()

	a.expectStart(t, 1)
	st := h.waitFor("a", "unhealthy", func(st supervisor.Status) bool { return st.Healthy != nil && !*st.Healthy })
	if st.HealthMessage != "not listening yet" {
		t.Fatalf("HealthMessage = %q", st.HealthMessage)
	}
	h.waitMessage("b", supervisor.StateWaiting, `waiting for dependency "a" (unhealthy)`)
	b.expectNoStart(t)

	healthy.Store(true)
	h.clk.BlockUntil(1) // a's next health check is scheduled
	h.clk.Advance(5 * time.Second)
	b.expectStart(t, 1)
	if got := started.get(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("start order %v", got)
	}
	st = h.waitFor("a", "healthy", func(st supervisor.Status) bool { return st.Healthy != nil && *st.Healthy })
	var health []string
	for _, ev := range st.Events {
		if strings.HasPrefix(ev.Message, "health check") {
			health = append(health, ev.Message)
		}
	}
	if want := []string{"health check failed: not listening yet", "health check passed"}; !slices.Equal(health, want) {
		t.Fatalf("health events %q, want %q", health, want)
	}

	// Health is forgotten when the service stops running.
	if err := h.sup.Stop(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	if st, _ := h.sup.Get("a"); st.Healthy != nil || st.State != supervisor.StateStopped {
		t.Fatalf("after Stop: healthy %v state %s", st.Healthy, st.State)
	}
}

func TestHealthCheckTimeout(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	f := newFake("svc")
	spec := f.spec()
	spec.Health = &supervisor.HealthCheck{
		InitialDelay: time.Second,
		Timeout:      2 * time.Second,
		Check: func(ctx context.Context) error {
			<-ctx.Done() // hangs until cancelled
			return ctx.Err()
		},
	}
	h.add(spec)
	h.run()
	f.expectStart(t, 1)
	h.clk.BlockUntil(1)
	h.clk.Advance(time.Second) // initial delay over: check starts
	h.clk.BlockUntil(1)        // its timeout is armed
	if st, _ := h.sup.Get("svc"); st.Healthy != nil {
		t.Fatalf("health known before the check finished: %v", *st.Healthy)
	}
	h.clk.Advance(2 * time.Second)
	st := h.waitFor("svc", "unhealthy", func(st supervisor.Status) bool { return st.Healthy != nil && !*st.Healthy })
	if !strings.Contains(st.HealthMessage, "timed out") {
		t.Fatalf("HealthMessage = %q", st.HealthMessage)
	}
}

func TestReverseStopOnShutdown(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	stopped := &recorder{}
	// a <- b <- c, plus d depending on a and c (diamond-ish).
	a, b, c, d := newFake("a"), newFake("b"), newFake("c"), newFake("d")
	for _, f := range []*fakeService{a, b, c, d} {
		f.stopped = stopped
	}
	h.add(a.spec())
	h.add(b.spec("a"))
	h.add(c.spec("b"))
	h.add(d.spec("a", "c"))
	h.run()
	for _, f := range []*fakeService{a, b, c, d} {
		f.expectStart(t, 1)
	}
	h.waitState("d", supervisor.StateRunning)

	h.shutdown()
	if got, want := stopped.get(), []string{"d", "c", "b", "a"}; !slices.Equal(got, want) {
		t.Fatalf("stop order %v, want %v", got, want)
	}
	for _, st := range h.sup.List() {
		if st.State != supervisor.StateStopped {
			t.Errorf("%s: state %s after shutdown", st.ID, st.State)
		}
	}
}

func TestStopStopsDependentsFirst(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	stopped := &recorder{}
	a, b, c := newFake("a"), newFake("b"), newFake("c")
	for _, f := range []*fakeService{a, b, c} {
		f.stopped = stopped
	}
	h.add(a.spec())
	h.add(b.spec("a"))
	h.add(c.spec("b"))
	h.run()
	for _, f := range []*fakeService{a, b, c} {
		f.expectStart(t, 1)
	}
	h.waitState("c", supervisor.StateRunning)

	if err := h.sup.Stop(t.Context(), "b"); err != nil {
		t.Fatal(err)
	}
	if got, want := stopped.get(), []string{"c", "b"}; !slices.Equal(got, want) {
		t.Fatalf("stop order %v, want %v", got, want)
	}
	for id, want := range map[string]supervisor.State{"a": supervisor.StateRunning, "b": supervisor.StateStopped, "c": supervisor.StateStopped} {
		if got := h.state(id); got != want {
			t.Errorf("%s: state %s, want %s", id, got, want)
		}
	}

	// Starting b does not start c, which was stopped too.
	if err := h.sup.Start("b"); err != nil {
		t.Fatal(err)
	}
	b.expectStart(t, 2)
	h.waitState("b", supervisor.StateRunning)
	c.expectNoStart(t)
	if got := h.state("c"); got != supervisor.StateStopped {
		t.Fatalf("c: state %s, want Stopped", got)
	}
}

func TestAddDuringRun(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	h.run()
	a := newFake("a")
	h.add(a.spec())
	a.expectStart(t, 1)

	// b waits for a dependency that does not exist yet.
	b, c := newFake("b"), newFake("c")
	h.add(b.spec("c"))
	h.waitMessage("b", supervisor.StateWaiting, `waiting for dependency "c" (not added)`)
	b.expectNoStart(t)

	h.add(c.spec())
	c.expectStart(t, 1)
	b.expectStart(t, 1)
	h.waitState("b", supervisor.StateRunning)
}

func TestUnknownDependencyStaysWaiting(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	f := newFake("svc")
	h.add(f.spec("missing"))
	h.run()
	st := h.waitMessage("svc", supervisor.StateWaiting, `waiting for dependency "missing" (not added)`)
	if st.Since.IsZero() {
		t.Fatal("Since not set")
	}
	h.clk.Advance(time.Hour)
	f.expectNoStart(t)
	if got := h.state("svc"); got != supervisor.StateWaiting {
		t.Fatalf("state %s", got)
	}
}

func TestFinishedDependencyIsReady(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	setup, app := newFake("setup"), newFake("app")
	spec := setup.spec()
	spec.Health = &supervisor.HealthCheck{Check: func(context.Context) error { return errBoom }}
	h.add(spec)
	h.add(app.spec("setup"))
	h.run()
	setup.expectStart(t, 1)
	h.waitMessage("app", supervisor.StateWaiting, `waiting for dependency "setup" (unhealthy)`)
	setup.exit(t, nil)
	app.expectStart(t, 1)
	h.waitState("setup", supervisor.StateFinished)
}

func TestConditions(t *testing.T) {
	tests := []struct {
		name      string
		result    error
		wantState supervisor.State
	}{
		{"satisfied", nil, supervisor.StateRunning},
		{"failed", errBoom, supervisor.StateFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, supervisor.Options{})
			f := newFake("svc")
			release := make(chan struct{})
			spec := f.spec()
			spec.Conditions = []supervisor.Condition{{Name: "file exists", Wait: func(ctx context.Context) error {
				select {
				case <-release:
					return tt.result
				case <-ctx.Done():
					return ctx.Err()
				}
			}}}
			h.add(spec)
			h.run()
			h.waitMessage("svc", supervisor.StateWaiting, `waiting for condition "file exists"`)
			f.expectNoStart(t)
			close(release)
			st := h.waitState("svc", tt.wantState)
			if tt.result != nil {
				if msg := st.Events[len(st.Events)-1].Message; !strings.Contains(msg, "file exists") || !strings.Contains(msg, "boom") {
					t.Fatalf("message %q", msg)
				}
				f.expectNoStart(t)
				return
			}
			f.expectStart(t, 1)
		})
	}
}

// TestExecFailureNeverRunning is the reproducer of a review finding: the
// supervisor used to report Running before the runner had started anything,
// so a dependent without a health check started against a process that had
// failed to exec.
func TestExecFailureNeverRunning(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	dependent := newFake("dependent")
	h.add(supervisor.Spec{
		ID:      "broken",
		Runner:  runner.Process([]string{"/nonexistent/binary"}, runner.ProcessOptions{}),
		Restart: supervisor.OnFailure,
	})
	h.add(dependent.spec("broken"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := h.sup.Subscribe(ctx)
	h.run()

	// Three failed runs (the back-off runs on the fake clock).
	for failures := 0; failures < 3; {
		select {
		case ev := <-events:
			if ev.ID == "broken" && ev.State == supervisor.StateRunning {
				t.Fatalf("a process that failed to exec was reported Running: %+v", ev)
			}
			if ev.ID == "broken" && ev.State == supervisor.StateBackingOff {
				failures++
				// The back-off timer is armed after the event is published:
				// an Advance before that would be lost.
				armed, cancelArmed := context.WithTimeout(ctx, safety)
				err := h.clk.BlockUntilContext(armed, 1)
				cancelArmed()
				if err != nil {
					t.Fatalf("back-off timer of failure %d never armed: %v", failures, err)
				}
				h.clk.Advance(time.Minute)
			}
			if ev.ID == "dependent" && ev.State != supervisor.StateWaiting {
				t.Fatalf("dependent left Waiting: %+v", ev)
			}
		case <-time.After(safety):
			t.Fatalf("broken service did not fail and back off (%d failures so far)", failures)
		}
	}
	dependent.expectNoStart(t)
	if st := h.state("dependent"); st != supervisor.StateWaiting {
		t.Fatalf("dependent is %s, want Waiting", st)
	}
}
