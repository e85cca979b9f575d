package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	policyv1client "k8s.io/client-go/kubernetes/typed/policy/v1"
	"k8s.io/client-go/rest"
)

// Kube is what a rollout needs of Kubernetes: nodes and pods, and the
// Eviction API. (Only these two API groups: kubectl's drain package would
// add 54 MB to nodectl, see docs/upgrades.md.)
type Kube struct {
	Core   corev1client.CoreV1Interface
	Policy policyv1client.PolicyV1Interface
}

// NewKube makes the clients from a REST config.
func NewKube(rc *rest.Config) (*Kube, error) {
	core, err := corev1client.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	policy, err := policyv1client.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &Kube{Core: core, Policy: policy}, nil
}

// ErrUnmanagedPods stops a drain: pods that nothing would recreate
// elsewhere would be lost with the node.
var ErrUnmanagedPods = errors.New("pods not managed by a controller")

// evictRetry is how often an eviction a PodDisruptionBudget refused is
// tried again.
const evictRetry = 2 * time.Second

// drain cordons n's Kubernetes node and evicts its pods the way `kubectl
// drain --ignore-daemonsets --delete-emptydir-data` does: through the
// Eviction API, so a PodDisruptionBudget that allows no disruption holds
// the drain (retried until DrainTimeout); DaemonSet and mirror pods stay;
// finished pods are deleted; a pod no controller would recreate stops the
// drain before anything is evicted. It returns how many pods were evicted.
// A node with no Kubernetes node of its name has nothing to drain.
func (r *runner) drain(ctx context.Context, n Node) (int, error) {
	node, err := r.kubeNode(ctx, n)
	if err != nil || node == nil {
		return 0, err
	}
	if err := r.setUnschedulable(ctx, n, true); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.o.DrainTimeout)
	defer cancel()
	pods, err := r.o.Kube.Core.Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node.Name).String(),
	})
	if err != nil {
		return 0, fmt.Errorf("list the pods of node %s: %w", node.Name, err)
	}
	var evict []corev1.Pod
	var unmanaged []string
	for _, p := range pods.Items {
		switch {
		case p.DeletionTimestamp != nil, isMirror(p), ownedBy(p, "DaemonSet"):
			continue
		case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
		case metav1.GetControllerOf(&p) == nil:
			unmanaged = append(unmanaged, p.Namespace+"/"+p.Name)
			continue
		}
		evict = append(evict, p)
	}
	if len(unmanaged) > 0 {
		return 0, fmt.Errorf("%w on node %s would be lost: %s (delete them, or give them a controller)", ErrUnmanagedPods, node.Name, strings.Join(unmanaged, ", "))
	}
	for _, p := range evict {
		if err := r.evict(ctx, p); err != nil {
			return 0, err
		}
	}
	for _, p := range evict {
		if err := r.waitGone(ctx, p); err != nil {
			return 0, err
		}
	}
	return len(evict), nil
}

// evict asks the Eviction API to remove p, again while a disruption budget
// refuses (429) until the drain's time is up.
func (r *runner) evict(ctx context.Context, p corev1.Pod) error {
	ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}}
	for {
		err := r.o.Kube.Policy.Evictions(p.Namespace).Evict(ctx, ev)
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return nil
		case apierrors.IsTooManyRequests(err):
			// A PodDisruptionBudget allows no disruption now.
		default:
			return fmt.Errorf("evict %s/%s: %w", p.Namespace, p.Name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("evict %s/%s: %w (a PodDisruptionBudget still allows no disruption: %v)", p.Namespace, p.Name, ctx.Err(), err)
		case <-time.After(evictRetry):
		}
	}
}

// waitGone waits until p is deleted (or a pod of its name with another
// UID replaced it).
func (r *runner) waitGone(ctx context.Context, p corev1.Pod) error {
	for {
		got, err := r.o.Kube.Core.Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err == nil && got.UID != p.UID:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s/%s evicted but still there: %w", p.Namespace, p.Name, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func isMirror(p corev1.Pod) bool {
	_, ok := p.Annotations[corev1.MirrorPodAnnotationKey]
	return ok
}

func ownedBy(p corev1.Pod, kind string) bool {
	c := metav1.GetControllerOf(&p)
	return c != nil && c.Kind == kind
}

// setUnschedulable cordons or uncordons n's Kubernetes node.
func (r *runner) setUnschedulable(ctx context.Context, n Node, on bool) error {
	if r.o.Kube == nil {
		return nil
	}
	patch := fmt.Appendf(nil, `{"spec":{"unschedulable":%t}}`, on)
	// The API may be between apiservers right after a control plane's
	// reboot: retry for a while.
	deadline := time.Now().Add(time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := r.o.Kube.Core.Nodes().Patch(cctx, n.Hostname, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		cancel()
		if err == nil || apierrors.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("set node %s unschedulable=%t: %w", n.Hostname, on, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// kubeNode is the Kubernetes node named like n's hostname; nil when there
// is none.
func (r *runner) kubeNode(ctx context.Context, n Node) (*corev1.Node, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	node, err := r.o.Kube.Core.Nodes().Get(cctx, n.Hostname, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", n.Hostname, err)
	}
	return node, nil
}
