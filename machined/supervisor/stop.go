package supervisor

import (
	"context"
	"sync"
)

// stopServices stops the services ids concurrently, but each only after the
// services in ids that depend on it have stopped. With userStop the services
// are also marked not wanted up, so they stay Stopped until Start. If ctx
// ends first it returns ctx.Err() and stopping goes on in the background.
func (s *Supervisor) stopServices(ctx context.Context, ids []string, userStop bool) error {
	inSet := make(map[string]bool, len(ids))
	for _, id := range ids {
		inSet[id] = true
	}
	dependents := make(map[string][]string) // id -> services in ids depending on it
	s.mu.Lock()
	for _, id := range ids {
		svc, ok := s.services[id]
		if !ok {
			continue
		}
		if userStop {
			svc.wantUp = false
		}
		for _, dep := range svc.spec.DependsOn {
			if inSet[dep] && dep != id {
				dependents[dep] = append(dependents[dep], id)
			}
		}
	}
	s.mu.Unlock()

	stopped := make(map[string]chan struct{}, len(ids))
	for _, id := range ids {
		stopped[id] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			defer close(stopped[id])
			for _, d := range dependents[id] {
				<-stopped[d]
			}
			s.stopOne(id, userStop)
		})
	}
	all := make(chan struct{})
	go func() {
		wg.Wait()
		close(all)
	}()
	select {
	case <-all:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopOne cancels the service's lifecycle and waits for it to end.
func (s *Supervisor) stopOne(id string, userStop bool) {
	s.mu.Lock()
	svc, ok := s.services[id]
	if !ok {
		s.mu.Unlock()
		return
	}
	if svc.cancel == nil {
		// Not active. A service that never got to run shows as Stopped.
		if userStop && svc.state == StateWaiting {
			s.setStateLocked(svc, StateStopped, "stopped")
		}
		s.mu.Unlock()
		return
	}
	cancel, done := svc.cancel, svc.done
	if !svc.stopping {
		svc.stopping = true
		s.setStateLocked(svc, StateStopping, "stopping")
	}
	s.mu.Unlock()
	cancel()
	<-done
}
