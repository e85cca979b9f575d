package supervisor_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/supervisor"
)

func TestBackoffDelays(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	f := newFake("flaky")
	f.autoExit = &errBoom
	spec := f.spec()
	spec.Restart = supervisor.OnFailure
	spec.Backoff = supervisor.Backoff{Initial: time.Second, Max: 8 * time.Second, Factor: 2}
	h.add(spec)
	h.run()

	delays := []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, d := range delays {
		f.expectStart(t, i+1)
		st := h.waitMessage("flaky", supervisor.StateBackingOff, "restarting in "+d.String())
		if !strings.Contains(st.Events[len(st.Events)-1].Message, "boom") {
			t.Errorf("back-off message %q does not carry the error", st.Events[len(st.Events)-1].Message)
		}
		h.clk.BlockUntil(1) // the back-off timer is armed
		h.clk.Advance(d - time.Millisecond)
		f.expectNoStart(t)
		if got := h.state("flaky"); got != supervisor.StateBackingOff {
			t.Fatalf("before the delay: state %s, want BackingOff", got)
		}
		h.clk.Advance(time.Millisecond)
	}
	f.expectStart(t, len(delays)+1)
	st := h.waitState("flaky", supervisor.StateBackingOff)
	if st.Restarts != len(delays) {
		t.Fatalf("Restarts = %d, want %d", st.Restarts, len(delays))
	}
}

func TestBackoffResetsAfterStableRun(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	f := newFake("svc")
	spec := f.spec()
	spec.Restart = supervisor.OnFailure
	spec.Backoff = supervisor.Backoff{ResetAfter: time.Minute} // defaults: 1s, 30s, 2
	h.add(spec)
	h.run()

	for i, d := range []time.Duration{time.Second, 2 * time.Second} {
		f.expectStart(t, i+1)
		f.exit(t, errBoom)
		h.waitMessage("svc", supervisor.StateBackingOff, "restarting in "+d.String())
		h.clk.BlockUntil(1)
		h.clk.Advance(d)
	}
	f.expectStart(t, 3)
	h.clk.Advance(time.Minute) // run 3 is stable
	f.exit(t, errBoom)
	h.waitMessage("svc", supervisor.StateBackingOff, "restarting in 1s")
}

func TestRestartPolicies(t *testing.T) {
	tests := []struct {
		policy      supervisor.RestartPolicy
		name        string
		exitErr     error
		wantRestart bool
		wantState   supervisor.State // when not restarted
	}{
		{supervisor.Once, "once", nil, false, supervisor.StateFinished},
		{supervisor.Once, "once", errBoom, false, supervisor.StateFailed},
		{supervisor.OnFailure, "on-failure", nil, false, supervisor.StateFinished},
		{supervisor.OnFailure, "on-failure", errBoom, true, ""},
		{supervisor.Always, "always", nil, true, ""},
		{supervisor.Always, "always", errBoom, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+errString(tt.exitErr), func(t *testing.T) {
			if got := tt.policy.String(); got != tt.name {
				t.Fatalf("String() = %q, want %q", got, tt.name)
			}
			h := newHarness(t, supervisor.Options{})
			f := newFake("svc")
			spec := f.spec()
			spec.Restart = tt.policy
			h.add(spec)
			h.run()
			f.expectStart(t, 1)
			f.exit(t, tt.exitErr)

			if !tt.wantRestart {
				st := h.waitState("svc", tt.wantState)
				if tt.exitErr != nil && !strings.Contains(st.Events[len(st.Events)-1].Message, "boom") {
					t.Errorf("final message %q does not carry the error", st.Events[len(st.Events)-1].Message)
				}
				if n := h.clk.Pending(); n != 0 {
					t.Fatalf("%d timers pending, want none", n)
				}
				h.clk.Advance(time.Hour)
				f.expectNoStart(t)
				if st.Restarts != 0 {
					t.Fatalf("Restarts = %d", st.Restarts)
				}
				return
			}
			h.waitState("svc", supervisor.StateBackingOff)
			h.clk.BlockUntil(1)
			h.clk.Advance(supervisor.DefaultBackoffInitial)
			f.expectStart(t, 2)
			if st := h.waitState("svc", supervisor.StateRunning); st.Restarts != 1 {
				t.Fatalf("Restarts = %d, want 1", st.Restarts)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "success"
	}
	return "error"
}

func TestStopPreventsRestart(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *harness, f *fakeService) // brings the service into the state to stop from
	}{
		{"running", func(*harness, *fakeService) {}},
		{"backing off", func(h *harness, f *fakeService) {
			f.exit(h.t, errBoom)
			h.waitState("svc", supervisor.StateBackingOff)
			h.clk.BlockUntil(1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, supervisor.Options{})
			f := newFake("svc")
			f.stopped = &recorder{}
			spec := f.spec()
			spec.Restart = supervisor.Always
			h.add(spec)
			h.run()
			f.expectStart(t, 1)
			tt.setup(h, f)

			if err := h.sup.Stop(t.Context(), "svc"); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if got := h.state("svc"); got != supervisor.StateStopped {
				t.Fatalf("state after Stop = %s", got)
			}
			if n := h.clk.Pending(); n != 0 {
				t.Fatalf("%d timers pending after Stop", n)
			}
			h.clk.Advance(time.Hour)
			f.expectNoStart(t)

			if err := h.sup.Start("svc"); err != nil {
				t.Fatalf("Start: %v", err)
			}
			f.expectStart(t, 2)
			h.waitState("svc", supervisor.StateRunning)
		})
	}
}

func TestRestart(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	started, stopped := &recorder{}, &recorder{}
	a, b, c := newFake("a"), newFake("b"), newFake("c")
	for _, f := range []*fakeService{a, b, c} {
		f.started, f.stopped = started, stopped
	}
	h.add(a.spec())
	h.add(b.spec("a"))
	h.add(c.spec()) // unrelated
	h.run()
	for _, f := range []*fakeService{a, b, c} {
		f.expectStart(t, 1)
	}
	h.waitState("b", supervisor.StateRunning)

	if err := h.sup.Restart(t.Context(), "a"); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	a.expectStart(t, 2)
	b.expectStart(t, 2)
	c.expectNoStart(t)
	if got, want := stopped.get(), []string{"b", "a"}; !equal(got, want) {
		t.Fatalf("stop order %v, want %v", got, want)
	}
	h.waitState("b", supervisor.StateRunning)
	if got := h.state("c"); got != supervisor.StateRunning {
		t.Fatalf("unrelated service state %s", got)
	}
}

func TestRestartPolicyString(t *testing.T) {
	if got := supervisor.RestartPolicy(42).String(); !strings.Contains(got, "42") {
		t.Fatalf("String() = %q", got)
	}
}

func TestAddValidation(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	r := newFake("x").runner()
	h.add(supervisor.Spec{ID: "a", DependsOn: []string{"b"}, Runner: r})
	h.add(supervisor.Spec{ID: "dup", Runner: r})
	tests := []struct {
		name string
		spec supervisor.Spec
		want error
	}{
		{"duplicate", supervisor.Spec{ID: "dup", Runner: r}, supervisor.ErrExists},
		{"cycle through unknown dependency", supervisor.Spec{ID: "b", DependsOn: []string{"a"}, Runner: r}, supervisor.ErrCycle},
		{"self dependency", supervisor.Spec{ID: "self", DependsOn: []string{"self"}, Runner: r}, supervisor.ErrCycle},
		{"empty ID", supervisor.Spec{Runner: r}, supervisor.ErrInvalidSpec},
		{"path in ID", supervisor.Spec{ID: "../etc", Runner: r}, supervisor.ErrInvalidSpec},
		{"no runner", supervisor.Spec{ID: "norunner"}, supervisor.ErrInvalidSpec},
		{"bad policy", supervisor.Spec{ID: "p", Runner: r, Restart: 7}, supervisor.ErrInvalidSpec},
		{"health without check", supervisor.Spec{ID: "h", Runner: r, Health: &supervisor.HealthCheck{}}, supervisor.ErrInvalidSpec},
		{"condition without wait", supervisor.Spec{ID: "c", Runner: r, Conditions: []supervisor.Condition{{Name: "x"}}}, supervisor.ErrInvalidSpec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := h.sup.Add(tt.spec)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Add = %v, want %v", err, tt.want)
			}
		})
	}
	// A three-service cycle, with the error naming the path.
	h.add(supervisor.Spec{ID: "c1", DependsOn: []string{"c2"}, Runner: r})
	h.add(supervisor.Spec{ID: "c2", DependsOn: []string{"c3"}, Runner: r})
	err := h.sup.Add(supervisor.Spec{ID: "c3", DependsOn: []string{"c1"}, Runner: r})
	if !errors.Is(err, supervisor.ErrCycle) || !strings.Contains(err.Error(), "c3 -> c1 -> c2 -> c3") {
		t.Fatalf("Add = %v, want ErrCycle naming c3 -> c1 -> c2 -> c3", err)
	}
	if _, err := h.sup.Get("c3"); !errors.Is(err, supervisor.ErrNotFound) {
		t.Fatalf("rejected service was registered: %v", err)
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}
