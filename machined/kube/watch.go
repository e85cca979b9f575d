package kube

import (
	"context"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
)

// Store is what an informer holds: the watched objects, already trimmed to
// what the controller reads.
type Store interface {
	List() []any
}

// WatchNodes runs an informer on the cluster's Nodes until ctx ends. Each
// Node is kept as its name, pod CIDRs and addresses only (a Node's status
// carries its images, conditions and volumes: kilobytes each, which a
// controller routing pod CIDRs never reads). The channel receives
// (coalesced) on every change.
func (c *Client) WatchNodes(ctx context.Context) (Store, <-chan struct{}) {
	return watch(ctx, c.core, "nodes", fields.Everything(), &corev1.Node{}, func(o any) (any, error) {
		nd, ok := o.(*corev1.Node)
		if !ok {
			return o, nil // a tombstone
		}
		return &corev1.Node{
			TypeMeta:   nd.TypeMeta,
			ObjectMeta: trimMeta(nd.ObjectMeta),
			Spec:       corev1.NodeSpec{PodCIDR: nd.Spec.PodCIDR, PodCIDRs: nd.Spec.PodCIDRs},
			Status:     corev1.NodeStatus{Addresses: nd.Status.Addresses},
		}, nil
	})
}

// WatchCSRs runs an informer on the CertificateSigningRequests of signer
// until ctx ends, without their managed fields. The channel receives
// (coalesced) on every change. Objects in the store are shared: copy one
// before changing it.
func (c *Client) WatchCSRs(ctx context.Context, signer string) (Store, <-chan struct{}) {
	return watch(ctx, c.certs, "certificatesigningrequests", fields.OneTermEqualSelector("spec.signerName", signer),
		&certificatesv1.CertificateSigningRequest{}, func(o any) (any, error) {
			if csr, ok := o.(*certificatesv1.CertificateSigningRequest); ok {
				csr.ManagedFields = nil
			}
			return o, nil
		})
}

// trimMeta keeps what identifies an object and its version.
func trimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}
}

// watch runs an informer on a cluster-scoped resource selected by selector.
func watch(ctx context.Context, client cache.Getter, resource string, selector fields.Selector, obj runtime.Object, trim cache.TransformFunc) (Store, <-chan struct{}) {
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
		Transform:     trim,
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    notify,
			UpdateFunc: func(_, o any) { notify(o) },
			DeleteFunc: notify,
		},
	})
	go informer.Run(ctx.Done())
	return store, kick
}
