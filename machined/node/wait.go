package node

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/ballast-os/ballast/machined/clock"
)

// This file holds how controllers wait for their inputs: an informer's
// kicks, a check polled until it passes, a channel closed.

// watchResource runs an informer on resource (cluster-scoped, selected by
// selector) until ctx ends. It returns the informer's store and a channel
// that receives (coalesced) whenever an object is added, changed or deleted.
func watchResource(ctx context.Context, client cache.Getter, resource string, selector fields.Selector, obj runtime.Object) (cache.Store, <-chan struct{}) {
	kick := make(chan struct{}, 1)
	notify := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	store, informer := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: cache.NewListWatchFromClient(client, resource, "", selector),
		ObjectType:    obj,
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    notify,
			UpdateFunc: func(_, o any) { notify(o) },
			DeleteFunc: notify,
		},
	})
	go informer.Run(ctx.Done())
	return store, kick
}

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
