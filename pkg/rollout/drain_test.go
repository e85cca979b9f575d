package rollout

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func pod(name, node string, owner string, phase corev1.PodPhase, annotations map[string]string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), Annotations: annotations},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: phase},
	}
	if owner != "" {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{Kind: owner, Name: owner + "-x", Controller: &yes}}
	}
	return p
}

// fakeDrain is a runner over a fake clientset (the field selector is not
// applied by the fake: every pod is on node n1) whose evictions delete the
// pod, after refusing with 429 `busy` times.
func fakeDrain(t *testing.T, busy int32, objs ...runtime.Object) (*runner, *fake.Clientset, *[]string) {
	t.Helper()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	cs := fake.NewClientset(append(objs, node)...)
	var evicted []string
	var refused atomic.Int32
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		if refused.Add(1) <= busy {
			return true, nil, apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 1)
		}
		name := a.(k8stesting.CreateAction).GetObject().(metav1.Object).GetName()
		evicted = append(evicted, name)
		return true, nil, cs.Tracker().Delete(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, "default", name)
	})
	r := &runner{o: Options{Kube: &Kube{Core: cs.CoreV1(), Policy: cs.PolicyV1()}, DrainTimeout: 10 * time.Second}}
	return r, cs, &evicted
}

func TestDrain(t *testing.T) {
	n := Node{Hostname: "n1"}
	t.Run("evicts managed and finished pods, keeps DaemonSet and mirror pods, cordons", func(t *testing.T) {
		r, cs, evicted := fakeDrain(t, 0,
			pod("web", "n1", "ReplicaSet", corev1.PodRunning, nil),
			pod("done", "n1", "", corev1.PodSucceeded, nil),
			pod("proxy", "n1", "DaemonSet", corev1.PodRunning, nil),
			pod("static", "n1", "", corev1.PodRunning, map[string]string{corev1.MirrorPodAnnotationKey: "x"}),
		)
		got, err := r.drain(context.Background(), n)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(*evicted)
		if got != 2 || !slices.Equal(*evicted, []string{"done", "web"}) {
			t.Errorf("evicted %d %v, want done and web", got, *evicted)
		}
		node, _ := cs.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
		if !node.Spec.Unschedulable {
			t.Error("the node is not cordoned")
		}
		if err := r.setUnschedulable(context.Background(), n, false); err != nil {
			t.Fatal(err)
		}
		node, _ = cs.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
		if node.Spec.Unschedulable {
			t.Error("uncordon left the node unschedulable")
		}
	})
	t.Run("a pod with no controller stops the drain before any eviction", func(t *testing.T) {
		r, _, evicted := fakeDrain(t, 0,
			pod("web", "n1", "ReplicaSet", corev1.PodRunning, nil),
			pod("bare", "n1", "", corev1.PodRunning, nil),
		)
		_, err := r.drain(context.Background(), n)
		if !errors.Is(err, ErrUnmanagedPods) || len(*evicted) != 0 {
			t.Fatalf("err %v, evicted %v: want ErrUnmanagedPods and nothing evicted", err, *evicted)
		}
	})
	t.Run("a disruption budget that refuses holds the drain, retried", func(t *testing.T) {
		r, _, evicted := fakeDrain(t, 2, pod("web", "n1", "ReplicaSet", corev1.PodRunning, nil))
		if _, err := r.drain(context.Background(), n); err != nil || len(*evicted) != 1 {
			t.Fatalf("err %v, evicted %v: want web evicted after two refusals", err, *evicted)
		}
	})
	t.Run("a budget that never allows it fails at the drain timeout", func(t *testing.T) {
		r, _, evicted := fakeDrain(t, 1<<30, pod("web", "n1", "ReplicaSet", corev1.PodRunning, nil))
		r.o.DrainTimeout = 3 * time.Second
		_, err := r.drain(context.Background(), n)
		if !errors.Is(err, context.DeadlineExceeded) || len(*evicted) != 0 {
			t.Fatalf("err %v, evicted %v: want the deadline and nothing evicted", err, *evicted)
		}
	})
	t.Run("a node Kubernetes does not know has nothing to drain", func(t *testing.T) {
		r, _, _ := fakeDrain(t, 0)
		if got, err := r.drain(context.Background(), Node{Hostname: "other"}); err != nil || got != 0 {
			t.Fatalf("got %d, %v", got, err)
		}
	})
}
