package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ballast-os/ballast/machined/logs"
)

// service is one registered service. All fields but spec and buf are guarded
// by Supervisor.mu.
type service struct {
	spec Spec
	buf  *logs.Buffer

	state     State
	message   string
	since     time.Time
	healthy   *bool
	healthMsg string
	restarts  int
	// failures counts failed health checks in a row; healthRestarts the
	// runs health ended (HealthCheck.FailureThreshold).
	failures       int
	healthRestarts int
	events         []Event // last maxEvents

	wantUp   bool // false after a user Stop, until Start
	removed  bool
	stopping bool               // a stop was requested for the active lifecycle
	cancel   context.CancelFunc // non-nil while a lifecycle goroutine is active
	done     chan struct{}      // closed when that goroutine ends
}

func (svc *service) statusLocked() Status {
	st := Status{
		ID:             svc.spec.ID,
		Description:    svc.spec.Description,
		State:          svc.state,
		HealthMessage:  svc.healthMsg,
		Restarts:       svc.restarts,
		HealthRestarts: svc.healthRestarts,
		Events:         slices.Clone(svc.events),
		Since:          svc.since,
	}
	if svc.healthy != nil {
		h := *svc.healthy
		st.Healthy = &h
	}
	return st
}

func (s *Supervisor) setState(svc *service, state State, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setStateLocked(svc, state, msg)
}

// setStateLocked records a state change (a repeat of the current state and
// message is ignored), logs it and wakes waiters.
func (s *Supervisor) setStateLocked(svc *service, state State, msg string) {
	if svc.state == state && svc.message == msg {
		return
	}
	now := s.clock.Now()
	if svc.state != state {
		svc.since = now
	}
	svc.state, svc.message = state, msg
	level := slog.LevelInfo
	if state == StateFailed || state == StateBackingOff {
		level = slog.LevelWarn
	}
	s.logger.Log(context.Background(), level, "service state changed",
		"service", svc.spec.ID, "state", string(state), "message", msg)
	s.recordEventLocked(svc, Event{Time: now, State: state, Message: msg})
	s.notifyLocked()
}

func (s *Supervisor) recordEventLocked(svc *service, ev Event) {
	if len(svc.events) >= maxEvents {
		svc.events = slices.Delete(svc.events, 0, len(svc.events)-maxEvents+1)
	}
	svc.events = append(svc.events, ev)
	s.publishLocked(ServiceEvent{ID: svc.spec.ID, Event: ev})
}

// startLocked launches the lifecycle goroutine of svc if the supervisor is
// running, the service is wanted up and not already active.
func (s *Supervisor) startLocked(svc *service) {
	if !s.running || !svc.wantUp || svc.removed || svc.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.baseCtx)
	done := make(chan struct{})
	svc.cancel, svc.done, svc.stopping = cancel, done, false
	go s.lifecycle(ctx, cancel, svc, done)
}

// lifecycle waits for the service's dependencies and conditions, runs it
// under its restart policy and records the final state.
func (s *Supervisor) lifecycle(ctx context.Context, cancel context.CancelFunc, svc *service, done chan struct{}) {
	state, msg := s.runService(ctx, svc)
	cancel()

	s.mu.Lock()
	defer s.mu.Unlock()
	stopped := svc.stopping
	if stopped {
		state, msg = StateStopped, "stopped"
	}
	svc.cancel, svc.done, svc.stopping = nil, nil, false
	s.setStateLocked(svc, state, msg)
	close(done)
	if stopped {
		// A Start that raced with the stop which ended us wins.
		s.startLocked(svc)
	}
}

func (s *Supervisor) runService(ctx context.Context, svc *service) (State, string) {
	if err := s.waitDependencies(ctx, svc); err != nil {
		return StateStopped, "stopped"
	}
	for _, c := range svc.spec.Conditions {
		s.setState(svc, StateWaiting, fmt.Sprintf("waiting for condition %q", c.Name))
		if err := c.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return StateStopped, "stopped"
			}
			return StateFailed, fmt.Sprintf("condition %q: %v", c.Name, err)
		}
	}
	err := s.compose(svc).Run(ctx, svc.buf, nil)
	switch {
	case ctx.Err() != nil:
		return StateStopped, "stopped"
	case err != nil:
		return StateFailed, err.Error()
	default:
		return StateFinished, "exited successfully"
	}
}

// waitDependencies blocks until every dependency is ready, keeping the
// service Waiting with a message naming the first unmet one.
func (s *Supervisor) waitDependencies(ctx context.Context, svc *service) error {
	for {
		s.mu.Lock()
		dep, reason := s.unmetDependencyLocked(svc)
		if dep == "" {
			s.mu.Unlock()
			return nil
		}
		s.setStateLocked(svc, StateWaiting, fmt.Sprintf("waiting for dependency %q (%s)", dep, reason))
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// unmetDependencyLocked returns the first dependency of svc that is not
// ready and why, or "" if all are ready.
func (s *Supervisor) unmetDependencyLocked(svc *service) (string, string) {
	for _, id := range svc.spec.DependsOn {
		dep, ok := s.services[id]
		switch {
		case !ok:
			return id, "not added"
		case dep.state == StateFinished:
			// Exited successfully and will not restart: e.g. a setup task.
		case dep.state != StateRunning:
			return id, "is " + string(dep.state)
		case dep.spec.Health != nil && dep.healthy == nil:
			return id, "not healthy yet"
		case dep.spec.Health != nil && !*dep.healthy:
			return id, "unhealthy"
		}
	}
	return "", ""
}
