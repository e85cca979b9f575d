package supervisor_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/supervisor"
)

// safety bounds waits that only time out when the code under test is broken;
// no test relies on it for passing.
const safety = 10 * time.Second

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

var errBoom = errors.New("boom")

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness runs a Supervisor on a fake clock.
type harness struct {
	t      *testing.T
	clk    *clock.Fake
	sup    *supervisor.Supervisor
	log    *lockedBuffer
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, opts supervisor.Options) *harness {
	t.Helper()
	h := &harness{t: t, clk: clock.NewFake(epoch), log: &lockedBuffer{}}
	opts.Clock = h.clk
	opts.Logger = slog.New(slog.NewJSONHandler(h.log, nil))
	h.sup = supervisor.New(opts)
	return h
}

// run starts Supervisor.Run; the test's cleanup stops it.
func (h *harness) run() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.sup.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(safety):
			h.t.Error("Run did not return at cleanup")
		}
	})
}

// shutdown cancels Run and waits for it to return.
func (h *harness) shutdown() {
	h.t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Fatalf("Run returned %v", err)
		}
		h.done <- nil // for cleanup
	case <-time.After(safety):
		h.t.Fatal("Run did not return after cancel")
	}
}

func (h *harness) add(spec supervisor.Spec) {
	h.t.Helper()
	if err := h.sup.Add(spec); err != nil {
		h.t.Fatalf("Add(%s): %v", spec.ID, err)
	}
}

// waitFor polls the service's status until pred holds.
func (h *harness) waitFor(id, what string, pred func(supervisor.Status) bool) supervisor.Status {
	h.t.Helper()
	deadline := time.Now().Add(safety)
	for {
		st, err := h.sup.Get(id)
		if err == nil && pred(st) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("service %s: never %s; status %+v, err %v", id, what, st, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *harness) waitState(id string, state supervisor.State) supervisor.Status {
	h.t.Helper()
	return h.waitFor(id, "in state "+string(state), func(st supervisor.Status) bool { return st.State == state })
}

func (h *harness) waitMessage(id string, state supervisor.State, substr string) supervisor.Status {
	h.t.Helper()
	return h.waitFor(id, fmt.Sprintf("%s with message %q", state, substr), func(st supervisor.Status) bool {
		return st.State == state && len(st.Events) > 0 && strings.Contains(st.Events[len(st.Events)-1].Message, substr)
	})
}

func (h *harness) state(id string) supervisor.State {
	h.t.Helper()
	st, err := h.sup.Get(id)
	if err != nil {
		h.t.Fatal(err)
	}
	return st.State
}

// recorder collects names in order across goroutines.
type recorder struct {
	mu    sync.Mutex
	names []string
}

func (r *recorder) add(name string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.names = append(r.names, name)
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.names...)
}

// fakeService is a goroutine service controlled by the test. Each run
// announces itself on starts, then exits with the value sent on exits, or,
// if autoExit is set, at once with *autoExit.
type fakeService struct {
	id       string
	starts   chan int
	exits    chan error
	autoExit *error
	started  *recorder // records id at each start
	stopped  *recorder // records id when stopped via ctx

	mu   sync.Mutex
	runs int
}

func newFake(id string) *fakeService {
	return &fakeService{id: id, starts: make(chan int, 100), exits: make(chan error)}
}

func (f *fakeService) runner() runner.Runner {
	return runner.Goroutine(f.id, func(ctx context.Context, out io.Writer) error {
		f.mu.Lock()
		f.runs++
		n := f.runs
		f.mu.Unlock()
		fmt.Fprintf(out, "%s run %d\n", f.id, n)
		f.started.add(f.id)
		f.starts <- n
		if f.autoExit != nil {
			return *f.autoExit
		}
		select {
		case err := <-f.exits:
			return err
		case <-ctx.Done():
			f.stopped.add(f.id)
			return ctx.Err()
		}
	})
}

func (f *fakeService) spec(deps ...string) supervisor.Spec {
	return supervisor.Spec{ID: f.id, Description: "fake " + f.id, DependsOn: deps, Runner: f.runner()}
}

// expectStart waits for run number n.
func (f *fakeService) expectStart(t *testing.T, n int) {
	t.Helper()
	select {
	case got := <-f.starts:
		if got != n {
			t.Fatalf("%s: got run %d, want run %d", f.id, got, n)
		}
	case <-time.After(safety):
		t.Fatalf("%s: run %d never started", f.id, n)
	}
}

// expectNoStart checks that no run has started since the last expectStart.
func (f *fakeService) expectNoStart(t *testing.T) {
	t.Helper()
	select {
	case n := <-f.starts:
		t.Fatalf("%s: unexpected run %d", f.id, n)
	default:
	}
}

// exit makes the current run return err.
func (f *fakeService) exit(t *testing.T, err error) {
	t.Helper()
	select {
	case f.exits <- err:
	case <-time.After(safety):
		t.Fatalf("%s: not running, cannot exit", f.id)
	}
}
