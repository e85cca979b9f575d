package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/runner"
)

// restarter is a runner.Runner that runs its inner Runner again according to
// a restart policy, waiting with exponential back-off between runs.
type restarter struct {
	inner   runner.Runner
	policy  RestartPolicy
	backoff Backoff // with defaults applied
	clock   clock.Clock
	// onBackoff is called before waiting delay after a run that returned err.
	onBackoff func(delay time.Duration, err error)
	// onRestart is called when the back-off is over, before the next run.
	onRestart func()
}

var _ runner.Runner = (*restarter)(nil)

func (r *restarter) String() string {
	return fmt.Sprintf("restart(%s, %s)", r.policy, r.inner)
}

func (r *restarter) shouldRestart(err error) bool {
	switch r.policy {
	case Always:
		return true
	case OnFailure:
		return err != nil
	default:
		return false
	}
}

// Run returns nil when ctx is cancelled, otherwise the result of the last
// run that is not restarted. started is passed to every run.
func (r *restarter) Run(ctx context.Context, out io.Writer, onStart func()) error {
	attempt := 0
	for {
		started := r.clock.Now()
		err := r.inner.Run(ctx, out, onStart)
		if ctx.Err() != nil {
			return nil
		}
		if !r.shouldRestart(err) {
			return err
		}
		if r.clock.Now().Sub(started) >= r.backoff.ResetAfter {
			attempt = 0
		}
		delay := r.backoff.delay(attempt)
		attempt++
		r.onBackoff(delay, err)
		t := r.clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
		r.onRestart()
	}
}

// monitor is a runner.Runner that reports Starting for each run of the
// service's own Runner, Running once that Runner says its workload started,
// and runs the health check from then on.
type monitor struct {
	sup *Supervisor
	svc *service
}

func (m *monitor) String() string { return m.svc.spec.Runner.String() }

func (m *monitor) Run(ctx context.Context, out io.Writer, onStart func()) error {
	inner := m.svc.spec.Runner
	m.sup.setState(m.svc, StateStarting, "starting")
	// The health check may end this run (rctx) without ending the service.
	rctx, endRun := context.WithCancelCause(ctx)
	defer endRun(nil)
	hctx, stop := context.WithCancel(rctx)
	var wg sync.WaitGroup
	var once sync.Once
	started := func() {
		once.Do(func() {
			m.sup.setState(m.svc, StateRunning, "started "+inner.String())
			if hc := m.svc.spec.Health; hc != nil {
				wg.Go(func() {
					m.sup.healthLoop(hctx, m.svc, *hc, func(e *UnhealthyError) { endRun(e) })
				})
			}
			if onStart != nil {
				onStart()
			}
		})
	}
	err := inner.Run(rctx, out, started)
	// Wait for a started() still running before wg.Wait: it may add to wg.
	once.Do(func() {})
	stop()
	wg.Wait()
	m.sup.clearHealth(m.svc)
	var unhealthy *UnhealthyError
	if ctx.Err() == nil && errors.As(context.Cause(rctx), &unhealthy) {
		m.sup.recordUnhealthy(m.svc, unhealthy)
		fmt.Fprintf(out, "%v\n", unhealthy)
		return unhealthy
	}
	return err
}

// compose builds the Runner the lifecycle runs: restart(monitor(spec.Runner)).
func (s *Supervisor) compose(svc *service) runner.Runner {
	return &restarter{
		inner:   &monitor{sup: s, svc: svc},
		policy:  svc.spec.Restart,
		backoff: svc.spec.Backoff,
		clock:   s.clock,
		onBackoff: func(delay time.Duration, err error) {
			why := "exited successfully"
			if err != nil {
				why = err.Error()
			}
			s.setState(svc, StateBackingOff, fmt.Sprintf("%s; restarting in %s", why, delay))
		},
		onRestart: func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			svc.restarts++
		},
	}
}
