package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// eventsFollower runs `nodectl events -f -o json` until stop and keeps
// every event it printed with the time it arrived.
type eventsFollower struct {
	c   *localCluster
	cmd *exec.Cmd

	mu     sync.Mutex
	events []followedEvent
	done   chan struct{}
}

type followedEvent struct {
	Node    string            `json:"node"`
	Time    time.Time         `json:"time"`
	Kind    string            `json:"kind"`
	Source  string            `json:"source"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields"`
	arrived time.Time
}

// eventMatch names an event by node, kind, source and one field's value.
type eventMatch struct {
	node, kind, source, field, value string
}

func (m eventMatch) String() string {
	return fmt.Sprintf("%s %s/%s %s=%s", m.node, m.kind, m.source, m.field, m.value)
}

// followEvents starts following the events of nodes (comma-separated),
// from now on (the kept ones are not asked for); stop ends it, and the
// test's end does too.
func (c *localCluster) followEvents(nodes string) *eventsFollower {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "nodectl"), "-n", nodes, "events", "-f", "--since", "1ms", "-o", "json")
	cmd.Env = append(os.Environ(), "NODECONFIG="+c.nodeconfig)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	f := &eventsFollower{c: c, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev followedEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				continue
			}
			ev.arrived = time.Now()
			f.mu.Lock()
			f.events = append(f.events, ev)
			f.mu.Unlock()
		}
	}()
	c.t.Cleanup(f.stop)
	return f
}

// has reports which of want the follower has not printed yet.
func (f *eventsFollower) has(want ...eventMatch) error {
	for _, w := range want {
		if _, ok := f.find(w); !ok {
			return fmt.Errorf("no event %s among %d: %s", w, f.count(), f.summary())
		}
	}
	return nil
}

func (f *eventsFollower) find(w eventMatch) (followedEvent, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ev := range f.events {
		host, _, err := net.SplitHostPort(ev.Node) // nodectl names a node host:port
		if err != nil {
			host = ev.Node
		}
		if host == w.node && ev.Kind == w.kind && ev.Source == w.source && ev.Fields[w.field] == w.value {
			return ev, true
		}
	}
	return followedEvent{}, false
}

func (f *eventsFollower) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.events)
}

// delay is how long after it happened (the node's clock, here the same
// host's) the event w reached the follower.
func (f *eventsFollower) delay(w eventMatch) time.Duration {
	ev, _ := f.find(w)
	return ev.arrived.Sub(ev.Time).Round(time.Millisecond)
}

// stop ends the follower (by its PID) and waits for its output's end.
func (f *eventsFollower) stop() {
	if f.cmd.ProcessState != nil {
		return
	}
	_ = f.cmd.Process.Signal(syscall.SIGTERM)
	<-f.done
	_ = f.cmd.Wait()
}

// summary lists the events printed so far, one short line each.
func (f *eventsFollower) summary() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, ev := range f.events {
		fmt.Fprintf(&b, "\n  %s %s %s/%s %s %v", ev.Time.Format("15:04:05.000"), ev.Node, ev.Kind, ev.Source, ev.Message, ev.Fields)
	}
	return b.String()
}
