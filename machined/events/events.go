// Package events is the node's stream of typed machine events: a config
// applied, a service's state, etcd's leader, the VIP, an upgrade. A Ring
// keeps the last ones in memory and fans each new one out to its followers
// (nodectl events -f); a follower that falls behind loses the oldest of its
// queue and is told how many with a LOST event, so publishing never blocks
// the code that reports.
package events

import (
	"context"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/clock"
)

// Kind is what an event is about (the API's enum).
type Kind = machine.EventKind

// The kinds, named for the packages that publish them.
const (
	ConfigApplied = machine.EventKind_EVENT_KIND_CONFIG_APPLIED
	ConfigStaged  = machine.EventKind_EVENT_KIND_CONFIG_STAGED
	Service       = machine.EventKind_EVENT_KIND_SERVICE
	EtcdLeader    = machine.EventKind_EVENT_KIND_ETCD_LEADER
	EtcdMember    = machine.EventKind_EVENT_KIND_ETCD_MEMBER
	VIP           = machine.EventKind_EVENT_KIND_VIP
	Certificate   = machine.EventKind_EVENT_KIND_CERTIFICATE
	Upgrade       = machine.EventKind_EVENT_KIND_UPGRADE
	Lost          = machine.EventKind_EVENT_KIND_LOST
)

// Defaults of a Ring.
const (
	// DefaultSize is how many events a Ring keeps.
	DefaultSize = 1000
	// followQueue is how many events a follower may lag behind before it
	// loses the oldest of them.
	followQueue = 256
)

// Event is one thing that happened on the node.
type Event struct {
	// ID grows by one per event since the Ring was made.
	ID      uint64
	Time    time.Time
	Kind    Kind
	Source  string
	Message string
	Fields  map[string]string
}

// Publisher records events. A nil *Ring is a Publisher that drops them,
// so a component made without one (tests) needs no check.
type Publisher interface {
	Publish(kind Kind, source, message string, fields ...string)
}

// Ring keeps the last events and fans new ones out. It is safe for
// concurrent use.
type Ring struct {
	clock clock.Clock

	mu        sync.Mutex
	buf       []Event // circular
	head, n   int
	nextID    uint64
	followers map[*follower]struct{}
}

// New returns a Ring keeping size events (DefaultSize when size <= 0).
func New(size int, clk clock.Clock) *Ring {
	if size <= 0 {
		size = DefaultSize
	}
	if clk == nil {
		clk = clock.Real()
	}
	return &Ring{clock: clk, buf: make([]Event, size), nextID: 1, followers: map[*follower]struct{}{}}
}

// Publish records an event; fields are key, value pairs (an odd last key
// gets an empty value). It never blocks on a follower.
func (r *Ring) Publish(kind Kind, source, message string, fields ...string) {
	if r == nil {
		return
	}
	var f map[string]string
	if len(fields) > 0 {
		f = make(map[string]string, (len(fields)+1)/2)
		for i := 0; i < len(fields); i += 2 {
			v := ""
			if i+1 < len(fields) {
				v = fields[i+1]
			}
			f[fields[i]] = v
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := Event{ID: r.nextID, Time: r.clock.Now(), Kind: kind, Source: source, Message: message, Fields: f}
	r.nextID++
	r.buf[(r.head+r.n)%len(r.buf)] = ev
	if r.n < len(r.buf) {
		r.n++
	} else {
		r.head = (r.head + 1) % len(r.buf)
	}
	for fl := range r.followers {
		fl.push(ev)
	}
}

// List returns the kept events at or after since (zero: all), at most the
// last tail of them (0: all), oldest first.
func (r *Ring) List(since time.Time, tail int) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listLocked(since, tail)
}

func (r *Ring) listLocked(since time.Time, tail int) []Event {
	var out []Event
	for i := range r.n {
		ev := r.buf[(r.head+i)%len(r.buf)]
		if !since.IsZero() && ev.Time.Before(since) {
			continue
		}
		out = append(out, clone(ev))
	}
	if tail > 0 && len(out) > tail {
		out = out[len(out)-tail:]
	}
	return out
}

// Follow sends what List(since, tail) returns, then every new event, until
// ctx ends (then it closes the channel).
func (r *Ring) Follow(ctx context.Context, since time.Time, tail int) <-chan Event {
	out := make(chan Event)
	f := &follower{wake: make(chan struct{}, 1)}
	r.mu.Lock()
	f.queue = r.listLocked(since, tail)
	r.followers[f] = struct{}{}
	r.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			r.mu.Lock()
			delete(r.followers, f)
			r.mu.Unlock()
		}()
		for {
			ev, ok := f.pop()
			if !ok {
				select {
				case <-ctx.Done():
					return
				case <-f.wake:
					continue
				}
			}
			select {
			case <-ctx.Done():
				return
			case out <- ev:
			}
		}
	}()
	return out
}

type follower struct {
	mu     sync.Mutex
	queue  []Event
	missed uint64
	wake   chan struct{}
}

// push queues ev, dropping the oldest queued event when the queue is full.
func (f *follower) push(ev Event) {
	f.mu.Lock()
	if len(f.queue) >= followQueue {
		f.queue = f.queue[1:]
		f.missed++
	}
	f.queue = append(f.queue, clone(ev))
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// pop returns the next event: a LOST one first when events were dropped.
func (f *follower) pop() (Event, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.missed > 0 {
		n := f.missed
		f.missed = 0
		at := time.Now()
		if len(f.queue) > 0 {
			at = f.queue[0].Time
		}
		return Event{Time: at, Kind: Lost, Source: "events", Message: "this follower fell behind; events were dropped",
			Fields: map[string]string{"missed": strconv.FormatUint(n, 10)}}, true
	}
	if len(f.queue) == 0 {
		return Event{}, false
	}
	ev := f.queue[0]
	f.queue = f.queue[1:]
	return ev, true
}

func clone(ev Event) Event {
	ev.Fields = maps.Clone(ev.Fields)
	return ev
}
