package node

import (
	"context"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
)

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
