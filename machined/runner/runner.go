package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
)

// Runner runs a service.
type Runner interface {
	// Run runs the service until it exits or ctx is cancelled. Output goes to out.
	// When ctx is cancelled Run stops the service gracefully and returns after it is gone.
	//
	// started is called once, when the workload really runs (a process after
	// a successful exec): the supervisor reports a service Running only then,
	// so a workload that never started never satisfies a dependent. A Runner
	// that fails before its workload starts never calls it. started may be nil.
	Run(ctx context.Context, out io.Writer, started func()) error
	// String describes the runner for logs and status messages.
	String() string
}

// ErrPanic is wrapped by the error a Goroutine runner returns when its
// function panics.
var ErrPanic = errors.New("panic")

// Goroutine returns a Runner that calls fn in the caller's goroutine; the
// workload counts as started when fn is called. fn must
// return promptly once ctx is cancelled. A panic in fn is recovered and
// returned as an error wrapping ErrPanic (the stack goes to out). When ctx has
// been cancelled, a context error returned by fn is treated as a clean stop
// and Run returns nil.
func Goroutine(name string, fn func(ctx context.Context, out io.Writer) error) Runner {
	return &goroutineRunner{name: name, fn: fn}
}

type goroutineRunner struct {
	name string
	fn   func(ctx context.Context, out io.Writer) error
}

func (g *goroutineRunner) String() string { return "goroutine(" + g.name + ")" }

func (g *goroutineRunner) Run(ctx context.Context, out io.Writer, started func()) (err error) {
	if out == nil {
		out = io.Discard
	}
	if started != nil {
		started()
	}
	defer func() {
		if r := recover(); r != nil {
			_, _ = fmt.Fprintf(out, "panic: %v\n%s", r, debug.Stack())
			err = fmt.Errorf("%s: %w: %v", g, ErrPanic, r)
		}
	}()
	err = g.fn(ctx, out)
	if err != nil && ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return nil
	}
	return err
}
