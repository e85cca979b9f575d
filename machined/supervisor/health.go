package supervisor

import (
	"context"
	"fmt"
	"time"
)

// healthLoop runs hc until ctx ends: after InitialDelay, then every
// Interval. After hc.FailureThreshold failures in a row (when set) it calls
// unhealthy and returns.
func (s *Supervisor) healthLoop(ctx context.Context, svc *service, hc HealthCheck, unhealthy func(*UnhealthyError)) {
	interval, timeout := hc.Interval, hc.Timeout
	if interval <= 0 {
		interval = DefaultHealthInterval
	}
	if timeout <= 0 {
		timeout = DefaultHealthTimeout
	}
	if hc.InitialDelay > 0 && !s.sleep(ctx, hc.InitialDelay) {
		return
	}
	failures := 0
	for {
		err := s.runCheck(ctx, hc.Check, timeout)
		if ctx.Err() != nil {
			return
		}
		s.setHealth(svc, err)
		if hc.Liveness != nil {
			if err = s.runCheck(ctx, hc.Liveness, timeout); ctx.Err() != nil {
				return
			}
		}
		if failures = 0; err != nil {
			failures = s.countFailure(svc)
		} else {
			s.resetFailures(svc)
		}
		if hc.FailureThreshold > 0 && failures >= hc.FailureThreshold {
			unhealthy(&UnhealthyError{Failures: failures, Last: err})
			return
		}
		if !s.sleep(ctx, interval) {
			return
		}
	}
}

// sleep waits d on the supervisor's clock; false if ctx ended first.
func (s *Supervisor) sleep(ctx context.Context, d time.Duration) bool {
	t := s.clock.NewTimer(d)
	select {
	case <-ctx.Done():
		t.Stop()
		return false
	case <-t.C():
		return true
	}
}

// runCheck runs check with a timeout on the supervisor's clock. The timeout
// timer is stopped before runCheck returns.
func (s *Supervisor) runCheck(ctx context.Context, check func(context.Context) error, timeout time.Duration) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				res <- fmt.Errorf("health check panicked: %v", r)
			}
		}()
		res <- check(cctx)
	}()
	t := s.clock.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-res:
		return err
	case <-t.C():
		return fmt.Errorf("health check timed out after %s", timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// setHealth records a check result; a change of health is an event.
func (s *Supervisor) setHealth(svc *service, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	healthy := err == nil
	msg := "health check passed"
	svc.healthMsg = ""
	if err != nil {
		svc.healthMsg = err.Error()
		msg = "health check failed: " + svc.healthMsg
	}
	if svc.healthy != nil && *svc.healthy == healthy {
		return
	}
	svc.healthy = &healthy
	s.logger.Info("service health changed", "service", svc.spec.ID, "healthy", healthy, "message", svc.healthMsg)
	s.recordEventLocked(svc, Event{Time: s.clock.Now(), State: svc.state, Message: msg})
	s.notifyLocked()
}

// clearHealth forgets the health of a service that is no longer running.
func (s *Supervisor) clearHealth(svc *service) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if svc.healthy == nil && svc.healthMsg == "" {
		return
	}
	svc.healthy, svc.healthMsg = nil, ""
	s.notifyLocked()
}

// countFailure counts a failed check of svc's current run and returns the
// failures in a row.
func (s *Supervisor) countFailure(svc *service) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc.failures++
	return svc.failures
}

func (s *Supervisor) resetFailures(svc *service) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc.failures = 0
}

// recordUnhealthy counts a health restart of svc and records it as an event.
func (s *Supervisor) recordUnhealthy(svc *service, e *UnhealthyError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc.healthRestarts++
	svc.failures = 0
	s.logger.Warn("service unhealthy: restarting it", "service", svc.spec.ID, "failures", e.Failures, "error", e.Last)
	s.recordEventLocked(svc, Event{Time: s.clock.Now(), State: svc.state, Message: e.Error()})
	s.notifyLocked()
}
