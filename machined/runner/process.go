package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Defaults for ProcessOptions fields left zero.
const (
	DefaultGracePeriod = 10 * time.Second
)

// drainTimeout bounds how long Run waits for the output pipe to reach EOF
// after the process group was killed; a descendant that escaped the group
// (setsid) could otherwise hold it open forever.
const drainTimeout = 2 * time.Second

// ErrNoCommand is returned by Run of a Process with no arguments.
var ErrNoCommand = errors.New("no command")

// ProcessOptions configures a Process runner.
type ProcessOptions struct {
	// Env is the environment of the process; nil inherits machined's.
	Env []string
	// Dir is the working directory; "" is machined's.
	Dir string
	// StopSignal is sent to the process group to stop it (default SIGTERM).
	StopSignal os.Signal
	// GracePeriod is how long to wait after StopSignal before SIGKILL
	// (default 10s).
	GracePeriod time.Duration
	// OnStart, if set, is called with the pid once the process has started.
	OnStart func(pid int)
}

// ExitError reports a process that exited unsuccessfully.
type ExitError struct {
	// Code is the exit status, or -1 if the process was killed by a signal.
	Code int
	// Signal is the signal that killed the process, or 0.
	Signal syscall.Signal
}

func (e *ExitError) Error() string {
	if e.Signal != 0 {
		return "killed by signal: " + e.Signal.String()
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// Process returns a Runner that executes args[0] with arguments args[1:].
//
// The process runs in its own process group; stdout and stderr both go to
// the out writer given to Run. When the process exits, whatever is left of
// its group is killed. When ctx is cancelled, StopSignal is sent to the group
// and, if the process has not exited after GracePeriod, SIGKILL; Run then
// returns nil. An unsuccessful exit returns an *ExitError.
func Process(args []string, opts ProcessOptions) Runner {
	if opts.StopSignal == nil {
		opts.StopSignal = syscall.SIGTERM
	}
	if opts.GracePeriod <= 0 {
		opts.GracePeriod = DefaultGracePeriod
	}
	return &processRunner{args: append([]string(nil), args...), opts: opts}
}

type processRunner struct {
	args []string
	opts ProcessOptions
}

func (p *processRunner) String() string {
	return "process(" + strings.Join(p.args, " ") + ")"
}

func (p *processRunner) Run(ctx context.Context, out io.Writer, started func()) error {
	if len(p.args) == 0 {
		return fmt.Errorf("%s: %w", p, ErrNoCommand)
	}
	if ctx.Err() != nil {
		return nil
	}
	if out == nil {
		out = io.Discard
	}
	// Our own pipe (rather than exec's copying goroutine) makes cmd.Wait
	// return as soon as the process exits, even if descendants still hold the
	// write end open.
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("%s: create output pipe: %w", p, err)
	}
	defer pr.Close()

	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Env = p.opts.Env
	cmd.Dir = p.opts.Dir
	cmd.Stdout = pw
	cmd.Stderr = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	_ = pw.Close()
	if err != nil {
		return fmt.Errorf("%s: start: %w", p, err)
	}
	pid := cmd.Process.Pid

	// Report the start before any output is copied, so that a reader of the
	// service's state never sees output of a service not yet Running.
	if p.opts.OnStart != nil {
		p.opts.OnStart(pid)
	}
	if started != nil {
		started()
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		copyOutput(out, pr)
	}()

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var waitErr error
	stopped := false
	select {
	case waitErr = <-exited:
	case <-ctx.Done():
		stopped = true
		waitErr = p.stop(pid, exited)
	}
	// Kill whatever is left of the process group (e.g. background children).
	_ = syscall.Kill(-pid, syscall.SIGKILL)

	drain := time.NewTimer(drainTimeout)
	defer drain.Stop()
	select {
	case <-copied:
	case <-drain.C:
		_ = pr.Close() // unblocks the reader
		<-copied
	}

	if stopped {
		return nil
	}
	return exitError(p, waitErr)
}

// stop signals the process group and waits for the leader to exit, escalating
// to SIGKILL after the grace period.
func (p *processRunner) stop(pid int, exited <-chan error) error {
	sig, ok := p.opts.StopSignal.(syscall.Signal)
	if !ok {
		sig = syscall.SIGTERM
	}
	_ = syscall.Kill(-pid, sig)
	// A stopped (frozen) process acts on the signal only once continued.
	_ = syscall.Kill(-pid, syscall.SIGCONT)
	grace := time.NewTimer(p.opts.GracePeriod)
	defer grace.Stop()
	select {
	case err := <-exited:
		return err
	case <-grace.C:
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	return <-exited
}

func exitError(p *processRunner, err error) error {
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("%s: wait: %w", p, err)
	}
	e := &ExitError{Code: ee.ExitCode()}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Code, e.Signal = -1, ws.Signal()
	}
	return e
}

// copyOutput copies r to w until EOF or a read error. If w fails, reading
// continues (discarding) so the process never blocks on a full pipe.
func copyOutput(w io.Writer, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 && w != nil {
			if _, werr := w.Write(buf[:n]); werr != nil {
				w = nil
			}
		}
		if err != nil {
			return
		}
	}
}
