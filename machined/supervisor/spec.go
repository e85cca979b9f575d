package supervisor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ballast-os/ballast/machined/runner"
)

// Sentinel errors, checkable with errors.Is.
var (
	ErrExists      = errors.New("service already exists")
	ErrNotFound    = errors.New("service not found")
	ErrCycle       = errors.New("dependency cycle")
	ErrInvalidSpec = errors.New("invalid service spec")
	ErrRunning     = errors.New("supervisor already running")
)

// RestartPolicy says when a service is restarted after its Runner returns.
type RestartPolicy int

// Restart policies.
const (
	// Once runs the service once: Finished on success, Failed otherwise.
	Once RestartPolicy = iota
	// OnFailure restarts the service only after it failed.
	OnFailure
	// Always restarts the service after any exit.
	Always
)

func (p RestartPolicy) String() string {
	switch p {
	case Once:
		return "once"
	case OnFailure:
		return "on-failure"
	case Always:
		return "always"
	default:
		return fmt.Sprintf("RestartPolicy(%d)", int(p))
	}
}

// Backoff defaults.
const (
	DefaultBackoffInitial    = time.Second
	DefaultBackoffMax        = 30 * time.Second
	DefaultBackoffFactor     = 2.0
	DefaultBackoffResetAfter = time.Minute
)

// Backoff is the delay before restarts: the n-th consecutive restart (from 0)
// waits Initial*Factor^n, capped at Max. The count resets once a run lasted
// at least ResetAfter. Zero fields take the defaults (1s, 30s, 2, 1m); a
// Factor below 1 is replaced by the default.
type Backoff struct {
	Initial, Max time.Duration
	Factor       float64
	ResetAfter   time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Factor < 1 {
		b.Factor = DefaultBackoffFactor
	}
	if b.ResetAfter <= 0 {
		b.ResetAfter = DefaultBackoffResetAfter
	}
	return b
}

// delay returns the wait before the n-th consecutive restart (n from 0).
func (b Backoff) delay(n int) time.Duration {
	d := float64(b.Initial) * math.Pow(b.Factor, float64(n))
	if math.IsInf(d, 0) || math.IsNaN(d) || d >= float64(b.Max) {
		return b.Max
	}
	return time.Duration(d)
}

// Health-check defaults.
const (
	DefaultHealthInterval = 10 * time.Second
	DefaultHealthTimeout  = 5 * time.Second
)

// HealthCheck is run periodically while a service is Running: first after
// InitialDelay, then every Interval (default 10s). A check taking longer than
// Timeout (default 5s) fails.
type HealthCheck struct {
	Check                           func(ctx context.Context) error
	Interval, Timeout, InitialDelay time.Duration
	// FailureThreshold > 0 makes health heal: after that many failed checks
	// in a row the service's run is stopped as failed (an *UnhealthyError),
	// so its restart policy runs it again, with back-off. 0 only records
	// health (for a service whose health depends on others, like an etcd
	// member without quorum, where a restart cannot help).
	FailureThreshold int
	// Liveness, when set, is what FailureThreshold counts instead of Check
	// (run right after it): Check says whether the service is ready for its
	// dependents, Liveness whether it is alive at all — an apiserver without
	// etcd is not ready, but restarting it would not help.
	Liveness func(ctx context.Context) error
}

// UnhealthyError ends a run whose health check failed FailureThreshold
// times in a row.
type UnhealthyError struct {
	Failures int
	// Last is the last check's error.
	Last error
}

func (e *UnhealthyError) Error() string {
	return fmt.Sprintf("restarted: health check failed %d times in a row: %v", e.Failures, e.Last)
}

func (e *UnhealthyError) Unwrap() error { return e.Last }

// Condition is an extra precondition for starting a service, e.g. "file
// exists". Wait blocks until the condition holds (nil) or ctx ends. Any
// other error fails the service.
type Condition struct {
	Name string
	Wait func(ctx context.Context) error
}

// Spec describes a service.
type Spec struct {
	// ID names the service; it is also the log file name, so it must be
	// non-empty and use only letters, digits, '.', '_' and '-' (not first '.').
	ID          string
	Description string
	// DependsOn lists services that must be ready before this one starts: a
	// dependency is ready when Running and, if it has a health check,
	// Healthy; a Once service that Finished successfully also counts as
	// ready. Dependencies need not be added yet.
	DependsOn  []string
	Conditions []Condition
	Runner     runner.Runner
	Restart    RestartPolicy
	Backoff    Backoff
	Health     *HealthCheck
}

func (s *Spec) validate() error {
	if !validID(s.ID) {
		return fmt.Errorf("%w: bad ID %q", ErrInvalidSpec, s.ID)
	}
	if s.Runner == nil {
		return fmt.Errorf("%w: service %q has no runner", ErrInvalidSpec, s.ID)
	}
	if s.Restart < Once || s.Restart > Always {
		return fmt.Errorf("%w: service %q: unknown restart policy %d", ErrInvalidSpec, s.ID, int(s.Restart))
	}
	if s.Health != nil && s.Health.Check == nil {
		return fmt.Errorf("%w: service %q: health check without Check func", ErrInvalidSpec, s.ID)
	}
	for _, c := range s.Conditions {
		if c.Wait == nil {
			return fmt.Errorf("%w: service %q: condition %q without Wait func", ErrInvalidSpec, s.ID, c.Name)
		}
	}
	return nil
}

func validID(id string) bool {
	if id == "" || id[0] == '.' || len(id) > 128 {
		return false
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// State is a service's lifecycle state.
type State string

// Service states.
const (
	StateWaiting    State = "Waiting"    // dependencies or conditions not met yet
	StateStarting   State = "Starting"   // about to run
	StateRunning    State = "Running"    // runner running
	StateFinished   State = "Finished"   // exited successfully, not restarted
	StateFailed     State = "Failed"     // exited with an error, not restarted
	StateBackingOff State = "BackingOff" // waiting before a restart
	StateStopping   State = "Stopping"   // being stopped
	StateStopped    State = "Stopped"    // stopped by Stop or supervisor shutdown
)

// Event is a state change or health transition of a service.
type Event struct {
	Time    time.Time
	State   State
	Message string
}

// ServiceEvent is an Event of the service ID, as delivered by Subscribe.
type ServiceEvent struct {
	ID string
	Event
}

// maxEvents is how many events Status keeps per service.
const maxEvents = 20

// Status is a snapshot of a service.
type Status struct {
	ID, Description string
	State           State
	// Healthy is nil when the service has no health check or no result yet.
	Healthy       *bool
	HealthMessage string
	// Restarts counts restarts made by the restart policy.
	Restarts int
	// HealthRestarts counts runs ended because the health check failed
	// FailureThreshold times in a row (each also counts in Restarts when
	// the policy runs the service again).
	HealthRestarts int
	// Events holds the last 20 events, oldest first.
	Events []Event
	// Since is when State was entered.
	Since time.Time
}
