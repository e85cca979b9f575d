package logs

import (
	"context"
	"fmt"
)

// follower is the state of one Follow call. Its fields are guarded by the
// owning Buffer's mu; writers only append to queue, so a slow reader never
// blocks them.
type follower struct {
	queue   []string
	dropped int
	done    bool          // buffer closed: finish after draining queue
	notify  chan struct{} // capacity 1: "queue changed"
}

func (f *follower) pushLocked(line string) {
	if len(f.queue) >= followQueueLines {
		f.dropped++
	} else {
		f.queue = append(f.queue, line)
	}
	f.wake()
}

func (f *follower) closeLocked() {
	f.done = true
	f.wake()
}

func (f *follower) wake() {
	select {
	case f.notify <- struct{}{}:
	default:
	}
}

// Follow returns a channel that first receives the last tail lines (tail <= 0:
// none) and then every new line as it is written, until ctx ends or the
// Buffer is closed; then the channel is closed. A reader that falls more than
// a few thousand lines behind misses lines, which are replaced by a single
// marker line "... N lines dropped".
func (b *Buffer) Follow(ctx context.Context, tail int) <-chan string {
	ch := make(chan string)
	f := &follower{notify: make(chan struct{}, 1)}
	b.mu.Lock()
	if tail > 0 {
		f.queue = b.tailLocked(tail)
	}
	if b.closed {
		f.done = true
	} else {
		b.followers[f] = struct{}{}
	}
	b.mu.Unlock()
	go b.forward(ctx, f, ch)
	return ch
}

func (b *Buffer) forward(ctx context.Context, f *follower, ch chan<- string) {
	defer close(ch)
	defer func() {
		b.mu.Lock()
		delete(b.followers, f)
		b.mu.Unlock()
	}()
	send := func(s string) bool {
		select {
		case ch <- s:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		b.mu.Lock()
		queue, dropped, done := f.queue, f.dropped, f.done
		f.queue, f.dropped = nil, 0
		b.mu.Unlock()

		for _, line := range queue {
			if !send(line) {
				return
			}
		}
		if dropped > 0 && !send(fmt.Sprintf("... %d lines dropped", dropped)) {
			return
		}
		if len(queue) > 0 || dropped > 0 {
			continue
		}
		if done {
			return
		}
		select {
		case <-f.notify:
		case <-ctx.Done():
			return
		}
	}
}
