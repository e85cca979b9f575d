package node

import (
	"context"
	"fmt"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
)

// This file holds how controllers wait for their inputs: a check polled
// until it passes, a channel closed.

// pollUntil calls check every interval until it passes or ctx ends (each
// call bounded by 5 s); it returns the last failure with ctx's error.
func pollUntil(ctx context.Context, clk clock.Clock, interval time.Duration, check func(context.Context) error) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-clk.After(interval):
		}
	}
}

// waitClosed returns once ch is closed, or with ctx's error.
func waitClosed(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
