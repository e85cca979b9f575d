package supervisor_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/supervisor"
)

// TestHealthHeals: a service whose health check fails FailureThreshold times
// in a row is restarted (its run ends as failed, the restart policy runs it
// again), the restart is counted and recorded as an event; a pass resets the
// count; FailureThreshold 0 only records health.
func TestHealthHeals(t *testing.T) {
	const interval = 5 * time.Second
	for _, tc := range []struct {
		name      string
		threshold int
		results   []bool // check results in order (true: pass)
		restarted bool
		// alive, when set, is the liveness check's constant result.
		alive *bool
	}{
		{"three failures restart", 3, []bool{false, false, false}, true, nil},
		{"a pass resets the count", 3, []bool{false, false, true, false, false}, false, nil},
		{"threshold 0 never restarts", 0, []bool{false, false, false, false, false}, false, nil},
		{"not ready but alive is not restarted", 3, []bool{false, false, false, false}, false, ptr(true)},
		{"not alive is restarted", 3, []bool{true, true, true}, true, ptr(false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, supervisor.Options{})
			f := newFake("svc")
			spec := f.spec()
			spec.Restart = supervisor.Always
			var checks atomic.Int32
			spec.Health = &supervisor.HealthCheck{
				Interval: interval, Timeout: time.Hour, InitialDelay: interval, FailureThreshold: tc.threshold,
				Check: func(context.Context) error {
					i := int(checks.Add(1)) - 1
					if i < len(tc.results) && tc.results[i] {
						return nil
					}
					return errors.New("frozen")
				},
			}
			if tc.alive != nil {
				spec.Health.Liveness = func(context.Context) error {
					if *tc.alive {
						return nil
					}
					return errors.New("frozen")
				}
			}
			h.add(spec)
			h.run()
			f.expectStart(t, 1)
			for want := int32(1); want <= int32(len(tc.results)); want++ {
				deadline := time.Now().Add(safety)
				for checks.Load() < want {
					if time.Now().After(deadline) {
						t.Fatalf("check %d never ran", want)
					}
					h.clk.BlockUntil(1)
					h.clk.Advance(interval)
					time.Sleep(time.Millisecond)
				}
			}
			if !tc.restarted {
				f.expectNoStart(t)
				if st, _ := h.sup.Get("svc"); st.HealthRestarts != 0 || st.State != supervisor.StateRunning {
					t.Fatalf("health restarts %d, state %s", st.HealthRestarts, st.State)
				}
				return
			}
			// The run ends as failed and the policy starts it again after
			// its back-off.
			st := h.waitFor("svc", "a health restart", func(st supervisor.Status) bool { return st.HealthRestarts == 1 })
			found := false
			for _, ev := range st.Events {
				found = found || strings.Contains(ev.Message, "health check failed 3 times in a row: frozen")
			}
			if !found {
				t.Fatalf("no event records the health restart: %+v", st.Events)
			}
			h.clk.BlockUntil(1)
			h.clk.Advance(time.Minute)
			f.expectStart(t, 2)
		})
	}
}

func ptr[T any](v T) *T { return &v }
