package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/logs"
)

// Options configures a Supervisor.
type Options struct {
	// Clock drives back-off and health checks (default clock.Real()).
	Clock clock.Clock
	// Logger receives the supervisor's logs (default: discarded).
	Logger *slog.Logger
	// LogDir, if set, holds each service's output in LogDir/<id>.log;
	// otherwise output is kept in memory only.
	LogDir string
	// LogRingLines is how many output lines are kept in memory per service
	// (default logs.DefaultRingLines).
	LogRingLines int
}

// Supervisor runs services. Its methods are safe for concurrent use.
type Supervisor struct {
	opts   Options
	clock  clock.Clock
	logger *slog.Logger

	mu       sync.Mutex
	services map[string]*service
	running  bool
	baseCtx  context.Context // parent of service contexts while running
	changed  chan struct{}   // closed and replaced on every change
	subs     map[*subscriber]struct{}
}

// New returns a Supervisor with no services.
func New(opts Options) *Supervisor {
	if opts.Clock == nil {
		opts.Clock = clock.Real()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{
		opts:     opts,
		clock:    opts.Clock,
		logger:   opts.Logger,
		services: make(map[string]*service),
		changed:  make(chan struct{}),
		subs:     make(map[*subscriber]struct{}),
	}
}

// Add registers a service. While Run is active the service is started as
// soon as its dependencies are ready. It fails with ErrInvalidSpec,
// ErrExists or ErrCycle.
func (s *Supervisor) Add(spec Spec) error {
	if err := spec.validate(); err != nil {
		return fmt.Errorf("add service: %w", err)
	}
	spec.DependsOn = slices.Clone(spec.DependsOn)
	spec.Conditions = slices.Clone(spec.Conditions)
	if spec.Health != nil {
		hc := *spec.Health
		spec.Health = &hc
	}
	spec.Backoff = spec.Backoff.withDefaults()

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.services[spec.ID]; ok {
		return fmt.Errorf("add service %q: %w", spec.ID, ErrExists)
	}
	if cycle := s.findCycleLocked(spec); cycle != nil {
		return fmt.Errorf("add service %q: %w: %s", spec.ID, ErrCycle, strings.Join(cycle, " -> "))
	}
	bufOpts := logs.Options{RingLines: s.opts.LogRingLines}
	if s.opts.LogDir != "" {
		bufOpts.File = filepath.Join(s.opts.LogDir, spec.ID+".log")
	}
	buf, err := logs.NewBuffer(bufOpts)
	if err != nil {
		return fmt.Errorf("add service %q: %w", spec.ID, err)
	}
	svc := &service{spec: spec, buf: buf, wantUp: true}
	s.services[spec.ID] = svc
	s.setStateLocked(svc, StateWaiting, "added")
	s.startLocked(svc)
	return nil
}

// findCycleLocked returns a dependency path from spec back to itself, or nil.
func (s *Supervisor) findCycleLocked(spec Spec) []string {
	visited := make(map[string]bool)
	var visit func(id string, path []string) []string
	visit = func(id string, path []string) []string {
		path = append(path[:len(path):len(path)], id)
		if id == spec.ID {
			return path
		}
		if visited[id] {
			return nil
		}
		visited[id] = true
		if svc, ok := s.services[id]; ok {
			for _, d := range svc.spec.DependsOn {
				if p := visit(d, path); p != nil {
					return p
				}
			}
		}
		return nil
	}
	for _, d := range spec.DependsOn {
		if p := visit(d, []string{spec.ID}); p != nil {
			return p
		}
	}
	return nil
}

// Remove stops the service (and, first, the services depending on it) and
// forgets it. Its log buffer is closed.
func (s *Supervisor) Remove(ctx context.Context, id string) error {
	s.mu.Lock()
	svc, err := s.lookupLocked(id)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("remove: %w", err)
	}
	svc.removed = true
	ids := s.withDependentsLocked(id)
	s.mu.Unlock()

	if err := s.stopServices(ctx, ids, true); err != nil {
		return fmt.Errorf("remove service %q: %w", id, err)
	}

	s.mu.Lock()
	if s.services[id] == svc {
		delete(s.services, id)
		s.notifyLocked()
	}
	s.mu.Unlock()
	s.logger.Info("service removed", "service", id)
	if err := svc.buf.Close(); err != nil {
		return fmt.Errorf("remove service %q: close logs: %w", id, err)
	}
	return nil
}

// Run starts the services and supervises them until ctx ends. Then it stops
// all services in reverse dependency order (a service only after everything
// depending on it has stopped) and returns nil. It returns ErrRunning if
// Run is already active.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return ErrRunning
	}
	s.running = true
	s.baseCtx = context.WithoutCancel(ctx)
	for _, id := range s.idsLocked() {
		s.startLocked(s.services[id])
	}
	s.mu.Unlock()
	s.logger.Info("supervisor started")

	<-ctx.Done()

	s.logger.Info("supervisor stopping services")
	s.mu.Lock()
	s.running = false
	ids := s.idsLocked()
	s.mu.Unlock()
	// Services get their own grace periods; shutdown waits for all of them.
	_ = s.stopServices(context.Background(), ids, false)
	s.logger.Info("supervisor stopped")
	return nil
}

// Start (re)starts a service that was stopped, finished or failed. It is a
// no-op for an active service. If Run is not active, the service starts
// with it.
func (s *Supervisor) Start(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, err := s.lookupLocked(id)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	svc.wantUp = true
	s.startLocked(svc)
	return nil
}

// Stop stops a service after stopping the services that depend on it. They
// stay Stopped (not restarted) until Start. If ctx ends first, Stop returns
// its error while stopping goes on.
func (s *Supervisor) Stop(ctx context.Context, id string) error {
	s.mu.Lock()
	if _, err := s.lookupLocked(id); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("stop: %w", err)
	}
	ids := s.withDependentsLocked(id)
	s.mu.Unlock()
	if err := s.stopServices(ctx, ids, true); err != nil {
		return fmt.Errorf("stop service %q: %w", id, err)
	}
	return nil
}

// Restart stops a service (and its dependents) and starts it again, along
// with those dependents that were meant to be running.
func (s *Supervisor) Restart(ctx context.Context, id string) error {
	s.mu.Lock()
	if _, err := s.lookupLocked(id); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("restart: %w", err)
	}
	ids := s.withDependentsLocked(id)
	var again []string
	for _, d := range ids {
		if d == id || s.services[d].wantUp {
			again = append(again, d)
		}
	}
	s.mu.Unlock()

	if err := s.stopServices(ctx, ids, true); err != nil {
		return fmt.Errorf("restart service %q: %w", id, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range again {
		if svc, ok := s.services[d]; ok {
			svc.wantUp = true
			s.startLocked(svc)
		}
	}
	return nil
}

// List returns the status of every service, sorted by ID.
func (s *Supervisor) List() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.idsLocked()
	out := make([]Status, 0, len(ids))
	for _, id := range ids {
		out = append(out, s.services[id].statusLocked())
	}
	return out
}

// Get returns the status of a service, or ErrNotFound.
func (s *Supervisor) Get(id string) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, err := s.lookupLocked(id)
	if err != nil {
		return Status{}, err
	}
	return svc.statusLocked(), nil
}

// Logs returns the output buffer of a service, or ErrNotFound.
func (s *Supervisor) Logs(id string) (*logs.Buffer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, err := s.lookupLocked(id)
	if err != nil {
		return nil, err
	}
	return svc.buf, nil
}

func (s *Supervisor) lookupLocked(id string) (*service, error) {
	svc, ok := s.services[id]
	if !ok {
		return nil, fmt.Errorf("service %q: %w", id, ErrNotFound)
	}
	return svc, nil
}

func (s *Supervisor) idsLocked() []string {
	ids := make([]string, 0, len(s.services))
	for id := range s.services {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// withDependentsLocked returns id and every service that depends on it,
// directly or transitively.
func (s *Supervisor) withDependentsLocked(id string) []string {
	seen := map[string]bool{id: true}
	queue := []string{id}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, other := range s.idsLocked() {
			if !seen[other] && slices.Contains(s.services[other].spec.DependsOn, cur) {
				seen[other] = true
				queue = append(queue, other)
			}
		}
	}
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// notifyLocked wakes everything waiting for a change (e.g. dependents).
func (s *Supervisor) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}
