package supervisor

import "context"

// maxSubscriberQueue is how many events a subscriber may lag behind before
// further events are dropped for it.
const maxSubscriberQueue = 4096

// subscriber is one Subscribe call; queue and dropped are guarded by
// Supervisor.mu, so publishing never blocks on a slow reader.
type subscriber struct {
	queue   []ServiceEvent
	dropped int
	notify  chan struct{} // capacity 1
}

// Subscribe returns a channel receiving every event (state changes and
// health transitions) of every service from now on, until ctx ends; then the
// channel is closed. A reader lagging thousands of events behind loses
// events (a warning is logged).
func (s *Supervisor) Subscribe(ctx context.Context) <-chan ServiceEvent {
	ch := make(chan ServiceEvent)
	sub := &subscriber{notify: make(chan struct{}, 1)}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	go s.forward(ctx, sub, ch)
	return ch
}

func (s *Supervisor) publishLocked(ev ServiceEvent) {
	for sub := range s.subs {
		if len(sub.queue) >= maxSubscriberQueue {
			sub.dropped++
			continue
		}
		sub.queue = append(sub.queue, ev)
		select {
		case sub.notify <- struct{}{}:
		default:
		}
	}
}

func (s *Supervisor) forward(ctx context.Context, sub *subscriber, ch chan<- ServiceEvent) {
	defer close(ch)
	defer func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	}()
	for {
		s.mu.Lock()
		queue, dropped := sub.queue, sub.dropped
		sub.queue, sub.dropped = nil, 0
		s.mu.Unlock()
		if dropped > 0 {
			s.logger.Warn("event subscriber too slow, events dropped", "dropped", dropped)
		}
		for _, ev := range queue {
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
		if len(queue) > 0 {
			continue
		}
		select {
		case <-sub.notify:
		case <-ctx.Done():
			return
		}
	}
}
