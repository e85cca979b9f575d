package runner_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/runner"
)

// safety bounds waits that only time out when the code under test is broken.
const safety = 20 * time.Second

// lineWriter is a thread-safe io.Writer recording output and publishing each
// complete line on a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	part  string
	lines chan string
}

func newLineWriter() *lineWriter { return &lineWriter{lines: make(chan string, 1024)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	s := w.part + string(p)
	parts := strings.Split(s, "\n")
	for _, l := range parts[:len(parts)-1] {
		w.lines <- l
	}
	w.part = parts[len(parts)-1]
	return len(p), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitLine waits for a line with the given prefix and returns it.
func (w *lineWriter) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(safety)
	for {
		select {
		case l := <-w.lines:
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("no line starting with %q; output so far:\n%s", prefix, w.String())
		}
	}
}

func runAsync(ctx context.Context, r runner.Runner, out io.Writer) <-chan error {
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, out, nil) }()
	return done
}

func waitErr(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(safety):
		t.Fatal("Run did not return")
	}
	return nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Format: pid (comm) state ...; comm may contain spaces.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func waitGone(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still alive", pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func sh(script string, opts runner.ProcessOptions) runner.Runner {
	return runner.Process([]string{"/bin/sh", "-c", script}, opts)
}

func TestProcessExit(t *testing.T) {
	tests := []struct {
		name     string
		script   string
		wantErr  bool
		wantCode int
		wantSig  syscall.Signal
		wantOut  string
	}{
		{name: "success", script: "echo out; echo err >&2", wantOut: "out\nerr\n"},
		{name: "exit code", script: "echo failing; exit 3", wantErr: true, wantCode: 3, wantOut: "failing\n"},
		{name: "killed by signal", script: "kill -KILL $$", wantErr: true, wantCode: -1, wantSig: syscall.SIGKILL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := newLineWriter()
			err := sh(tt.script, runner.ProcessOptions{}).Run(context.Background(), out, nil)
			if got := out.String(); got != tt.wantOut {
				t.Errorf("output = %q, want %q", got, tt.wantOut)
			}
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				return
			}
			var ee *runner.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("Run error %v (%T), want *ExitError", err, err)
			}
			if ee.Code != tt.wantCode || ee.Signal != tt.wantSig {
				t.Fatalf("ExitError = %+v, want code %d signal %v", ee, tt.wantCode, tt.wantSig)
			}
		})
	}
}

func TestProcessStartErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		is   error
	}{
		{"no args", nil, runner.ErrNoCommand},
		{"missing binary", []string{"/nonexistent/binary"}, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			started := 0
			err := runner.Process(tt.args, runner.ProcessOptions{}).Run(context.Background(), io.Discard, func() { started++ })
			if !errors.Is(err, tt.is) {
				t.Fatalf("Run = %v, want errors.Is %v", err, tt.is)
			}
			if started != 0 {
				t.Fatalf("a process that never ran reported started %d times", started)
			}
		})
	}
}

// TestStartedReported: each runner reports its workload started exactly
// once, before the workload's own work (the process's output) is seen.
func TestStartedReported(t *testing.T) {
	tests := []struct {
		name string
		r    runner.Runner
	}{
		{"process", sh(`echo ran`, runner.ProcessOptions{})},
		{"goroutine", runner.Goroutine("g", func(_ context.Context, out io.Writer) error {
			_, err := io.WriteString(out, "ran\n")
			return err
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var events []string
			out := writerFunc(func(p []byte) (int, error) {
				mu.Lock()
				defer mu.Unlock()
				events = append(events, "output")
				return len(p), nil
			})
			started := func() {
				mu.Lock()
				defer mu.Unlock()
				events = append(events, "started")
			}
			if err := tt.r.Run(context.Background(), out, started); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(events) != 2 || events[0] != "started" || events[1] != "output" {
				t.Fatalf("events = %v, want [started output]", events)
			}
		})
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestProcessOptions(t *testing.T) {
	dir := t.TempDir()
	out := newLineWriter()
	var started int
	r := sh(`echo "pid $$"; echo "dir $(pwd)"; echo "env $FOO"`, runner.ProcessOptions{
		Env:     []string{"FOO=bar"},
		Dir:     dir,
		OnStart: func(pid int) { started = pid },
	})
	if err := r.Run(context.Background(), out, nil); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("pid %d\ndir %s\nenv bar\n", started, dir)
	if started == 0 || out.String() != want {
		t.Fatalf("output = %q, want %q", out.String(), want)
	}
	if !strings.Contains(r.String(), "/bin/sh") {
		t.Fatalf("String() = %q", r.String())
	}
}

func TestProcessGracefulStop(t *testing.T) {
	tests := []struct {
		name   string
		signal os.Signal
		trap   string
	}{
		{"default SIGTERM", nil, "TERM"},
		{"custom signal", syscall.SIGUSR1, "USR1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := newLineWriter()
			pids := make(chan int, 1)
			r := sh(fmt.Sprintf(`trap 'echo got-signal; exit 0' %s; echo ready; while :; do sleep 1; done`, tt.trap),
				runner.ProcessOptions{
					StopSignal:  tt.signal,
					GracePeriod: time.Hour, // a SIGKILL would hang the test, not pass it
					OnStart:     func(pid int) { pids <- pid },
				})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := runAsync(ctx, r, out)
			pid := recvPID(t, pids)
			if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
				t.Fatalf("pgid = %d, %v; want own process group %d", pgid, err, pid)
			}
			out.waitLine(t, "ready")
			cancel()
			if err := waitErr(t, done); err != nil {
				t.Fatalf("Run after cancel = %v, want nil", err)
			}
			out.waitLine(t, "got-signal")
			waitGone(t, pid)
		})
	}
}

func TestProcessKilledAfterGracePeriod(t *testing.T) {
	out := newLineWriter()
	pids := make(chan int, 1)
	script := `trap 'echo term-ignored' TERM
(trap '' TERM; exec sleep 1000) &
echo "child $!"
echo ready
while :; do sleep 1; done`
	r := sh(script, runner.ProcessOptions{
		GracePeriod: 200 * time.Millisecond,
		OnStart:     func(pid int) { pids <- pid },
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runAsync(ctx, r, out)
	leader := recvPID(t, pids)
	var child int
	if _, err := fmt.Sscanf(out.waitLine(t, "child "), "child %d", &child); err != nil {
		t.Fatal(err)
	}
	out.waitLine(t, "ready")
	cancel()
	if err := waitErr(t, done); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	// The child ignores SIGTERM, so only the SIGKILL to the group ends it.
	waitGone(t, leader, child)
}

func TestProcessExitKillsLeftoverGroup(t *testing.T) {
	out := newLineWriter()
	// The background child keeps the output pipe open; Run must still return
	// once the leader exits, and kill the child.
	r := sh(`sleep 1000 & echo "child $!"; exit 4`, runner.ProcessOptions{})
	err := waitErr(t, runAsync(context.Background(), r, out))
	var ee *runner.ExitError
	if !errors.As(err, &ee) || ee.Code != 4 {
		t.Fatalf("Run = %v, want exit status 4", err)
	}
	var child int
	if _, err := fmt.Sscanf(out.waitLine(t, "child "), "child %d", &child); err != nil {
		t.Fatal(err)
	}
	waitGone(t, child)
}

func TestProcessCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	r := sh("echo never", runner.ProcessOptions{OnStart: func(int) { called = true }})
	if err := r.Run(ctx, io.Discard, nil); err != nil || called {
		t.Fatalf("Run = %v, started = %v; want nil, false", err, called)
	}
}

func TestGoroutine(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		fn      func(ctx context.Context, out io.Writer) error
		cancel  bool
		is      error
		wantOut string
	}{
		{name: "success", fn: func(_ context.Context, out io.Writer) error {
			_, err := fmt.Fprintln(out, "hello")
			return err
		}, wantOut: "hello\n"},
		{name: "error", fn: func(context.Context, io.Writer) error { return boom }, is: boom},
		{name: "panic", fn: func(context.Context, io.Writer) error { panic("oops") }, is: runner.ErrPanic, wantOut: "panic: oops\n"},
		{name: "cancel returns ctx error", cancel: true, fn: func(ctx context.Context, _ io.Writer) error {
			<-ctx.Done()
			return fmt.Errorf("wrapped: %w", ctx.Err())
		}},
		{name: "cancel with real error", cancel: true, is: boom, fn: func(ctx context.Context, _ io.Writer) error {
			<-ctx.Done()
			return boom
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			var out bytes.Buffer
			r := runner.Goroutine("test", tt.fn)
			err := r.Run(ctx, &out, nil)
			if tt.is == nil && err != nil || tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("Run = %v, want %v", err, tt.is)
			}
			first, _ := bufio.NewReader(&out).ReadString('\n')
			if first != tt.wantOut {
				t.Fatalf("first output line = %q, want %q", first, tt.wantOut)
			}
			if r.String() != "goroutine(test)" {
				t.Fatalf("String() = %q", r.String())
			}
		})
	}
}

// recvPID waits for the pid OnStart reports.
func recvPID(t *testing.T, pids <-chan int) int {
	t.Helper()
	select {
	case pid := <-pids:
		return pid
	case <-time.After(10 * time.Second):
		t.Fatal("the process never started")
		return 0
	}
}
