package supervisor_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/supervisor"
)

func TestNotFound(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	ctx := t.Context()
	calls := map[string]func() error{
		"Get":     func() error { _, err := h.sup.Get("nope"); return err },
		"Logs":    func() error { _, err := h.sup.Logs("nope"); return err },
		"Start":   func() error { return h.sup.Start("nope") },
		"Stop":    func() error { return h.sup.Stop(ctx, "nope") },
		"Restart": func() error { return h.sup.Restart(ctx, "nope") },
		"Remove":  func() error { return h.sup.Remove(ctx, "nope") },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, supervisor.ErrNotFound) {
				t.Fatalf("%s = %v, want ErrNotFound", name, err)
			}
		})
	}
}

func TestRunTwice(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	f := newFake("svc")
	h.add(f.spec())
	h.run()
	f.expectStart(t, 1) // Run is active
	if err := h.sup.Run(t.Context()); !errors.Is(err, supervisor.ErrRunning) {
		t.Fatalf("second Run = %v, want ErrRunning", err)
	}
}

func TestListAndStatus(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	for _, id := range []string{"zeta", "alpha", "mid"} {
		h.add(newFake(id).spec())
	}
	var ids []string
	for _, st := range h.sup.List() {
		ids = append(ids, st.ID)
		if st.State != supervisor.StateWaiting || st.Description != "fake "+st.ID || !st.Since.Equal(epoch) {
			t.Errorf("%s: status before Run %+v", st.ID, st)
		}
	}
	if !slices.Equal(ids, []string{"alpha", "mid", "zeta"}) {
		t.Fatalf("List order %v", ids)
	}
}

func TestEventsAreCapped(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	f := newFake("svc")
	f.autoExit = new(error) // exits successfully at once
	spec := f.spec()
	spec.Restart = supervisor.Always
	spec.Backoff = supervisor.Backoff{Initial: time.Second, Max: time.Second}
	h.add(spec)
	h.run()
	for i := 1; i <= 10; i++ {
		f.expectStart(t, i)
		h.clk.BlockUntil(1)
		h.clk.Advance(time.Second)
	}
	f.expectStart(t, 11)
	st := h.waitState("svc", supervisor.StateBackingOff)
	if len(st.Events) != 20 {
		t.Fatalf("%d events, want 20", len(st.Events))
	}
	if last := st.Events[len(st.Events)-1]; last.State != supervisor.StateBackingOff || !strings.Contains(last.Message, "exited successfully") {
		t.Fatalf("last event %+v", last)
	}
	if st.Restarts != 10 {
		t.Fatalf("Restarts = %d, want 10", st.Restarts)
	}
}

func TestLogsCaptured(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	h := newHarness(t, supervisor.Options{LogDir: dir, LogRingLines: 5})
	f := newFake("svc")
	h.add(f.spec())
	h.run()
	f.expectStart(t, 1)
	buf, err := h.sup.Logs("svc")
	if err != nil {
		t.Fatal(err)
	}
	if got := buf.Tail(0); !slices.Equal(got, []string{"svc run 1"}) {
		t.Fatalf("Tail = %q", got)
	}
	f.exit(t, nil)
	h.waitState("svc", supervisor.StateFinished)
	data, err := os.ReadFile(filepath.Join(dir, "svc.log"))
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "svc run 1\n" {
		t.Fatalf("log file %q", data)
	}

	if err := h.sup.Remove(t.Context(), "svc"); err != nil {
		t.Fatal(err)
	}
	if _, err := buf.Write([]byte("late\n")); err == nil {
		t.Fatal("buffer of a removed service still open")
	}
}

func TestProcessService(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	h.add(supervisor.Spec{
		ID:     "hello",
		Runner: runner.Process([]string{"/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"}, runner.ProcessOptions{}),
	})
	h.run()
	st := h.waitState("hello", supervisor.StateFailed)
	if msg := st.Events[len(st.Events)-1].Message; msg != "exit status 3" {
		t.Fatalf("message %q", msg)
	}
	buf, _ := h.sup.Logs("hello")
	if got := buf.Tail(0); !slices.Equal(got, []string{"hello", "oops"}) {
		t.Fatalf("Tail = %q", got)
	}
}

func TestRemove(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	stopped := &recorder{}
	a, b := newFake("a"), newFake("b")
	a.stopped, b.stopped = stopped, stopped
	h.add(a.spec())
	h.add(b.spec("a"))
	h.run()
	a.expectStart(t, 1)
	b.expectStart(t, 1)
	h.waitState("b", supervisor.StateRunning)

	if err := h.sup.Remove(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	if got := stopped.get(); !slices.Equal(got, []string{"b", "a"}) {
		t.Fatalf("stop order %v", got)
	}
	if _, err := h.sup.Get("a"); !errors.Is(err, supervisor.ErrNotFound) {
		t.Fatalf("Get after Remove: %v", err)
	}
	// The ID can be reused; the stopped dependent stays stopped until Start.
	a2 := newFake("a")
	h.add(a2.spec())
	a2.expectStart(t, 1)
	if got := h.state("b"); got != supervisor.StateStopped {
		t.Fatalf("b: %s", got)
	}
	if err := h.sup.Start("b"); err != nil {
		t.Fatal(err)
	}
	b.expectStart(t, 2)
}

func TestStartStopBeforeRun(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	a, b := newFake("a"), newFake("b")
	h.add(a.spec())
	h.add(b.spec())
	if err := h.sup.Stop(t.Context(), "b"); err != nil {
		t.Fatal(err)
	}
	if got := h.state("b"); got != supervisor.StateStopped {
		t.Fatalf("b: %s", got)
	}
	h.run()
	a.expectStart(t, 1)
	h.waitState("a", supervisor.StateRunning)
	b.expectNoStart(t)
	if err := h.sup.Start("b"); err != nil {
		t.Fatal(err)
	}
	b.expectStart(t, 1)
}

func TestSubscribe(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	f := newFake("svc")
	ctx, cancel := context.WithCancel(context.Background())
	events := h.sup.Subscribe(ctx)
	h.add(f.spec())
	h.run()
	var states []supervisor.State
	for len(states) < 3 {
		select {
		case ev := <-events:
			if ev.ID != "svc" || !ev.Time.Equal(epoch) {
				t.Fatalf("event %+v", ev)
			}
			states = append(states, ev.State)
		case <-time.After(safety):
			t.Fatalf("events so far %v", states)
		}
	}
	if want := []supervisor.State{supervisor.StateWaiting, supervisor.StateStarting, supervisor.StateRunning}; !slices.Equal(states, want) {
		t.Fatalf("states %v, want %v", states, want)
	}
	cancel()
	timeout := time.After(safety)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("channel not closed after ctx end")
		}
	}
}

func TestStateChangesAreLogged(t *testing.T) {
	h := newHarness(t, supervisor.Options{})
	f := newFake("svc")
	h.add(f.spec())
	h.run()
	f.expectStart(t, 1)
	f.exit(t, errBoom)
	h.waitState("svc", supervisor.StateFailed)

	var got []string
	for _, line := range strings.Split(strings.TrimSpace(h.log.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "service state changed" && rec["service"] == "svc" {
			got = append(got, rec["state"].(string)+":"+rec["message"].(string))
		}
	}
	want := []string{"Waiting:added", "Starting:starting", "Running:started goroutine(svc)", "Failed:boom"}
	if !slices.Equal(got, want) {
		t.Fatalf("logged %q, want %q", got, want)
	}
}
