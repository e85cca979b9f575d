// Package rollout upgrades a cluster one node at a time with every gate
// checked: the control planes first, one by one, then the workers in
// batches. Before a node it refuses to go on unless the whole cluster is
// healthy and every other etcd member is caught up (so taking the node
// down cannot cost quorum or an acknowledged write), moves etcd leadership
// off the node, and cordons and drains it through the Eviction API
// (PodDisruptionBudgets respected). The node itself then hands off the VIP,
// reboots into its new slot and must pass its health gate, else it boots
// its old slot again (package slots, A/B). After the node: uncordon, and
// the cluster healthy again before the next one.
//
// A rollout stops at the first failure and says where; the nodes already
// upgraded stay upgraded, and running it again skips them.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ballast-os/ballast/pkg/health"
)

// Phase names a step of one node's upgrade, as progress shows it.
type Phase string

// The phases, in order.
const (
	PhaseCheck     Phase = "check"
	PhaseLeader    Phase = "etcd-leader"
	PhaseDrain     Phase = "drain"
	PhaseUpgrade   Phase = "upgrade"
	PhaseUncordon  Phase = "uncordon"
	PhaseHealth    Phase = "cluster-health"
	PhaseCompleted Phase = "done"
)

// Options configure a rollout.
type Options struct {
	Target string // the bundle's Ballast version
	Nodes  []health.Node
	Dial   health.Dialer
	// Kube is an admin client of the cluster's Kubernetes (nil: no
	// Kubernetes; nothing to drain).
	Kube *Kube
	// Upgrade upgrades one node and returns once its health gate passed
	// (an error when it did not: the node is back on its old slot).
	Upgrade        func(ctx context.Context, n Node) error
	MaxUnavailable int
	DrainTimeout   time.Duration
	HealthTimeout  time.Duration // the node's gate, for the plan's text
	ClusterTimeout time.Duration // the cluster's health after each step
	// CatchUpTimeout bounds the wait for the other etcd members to apply
	// what the leader has committed.
	CatchUpTimeout time.Duration
	Out            io.Writer
}

// NodeError is a rollout stopped at a node.
type NodeError struct {
	Node  string
	Phase Phase
	Err   error
}

func (e *NodeError) Error() string { return fmt.Sprintf("%s: %s: %v", e.Node, e.Phase, e.Err) }
func (e *NodeError) Unwrap() error { return e.Err }

// ErrQuorum is a node whose going down could cost etcd its quorum or
// acknowledged writes: another member is unhealthy or behind.
var ErrQuorum = errors.New("etcd could lose quorum")

// Run carries out the plan. The cluster must be healthy when it starts;
// otherwise nothing is changed.
func Run(ctx context.Context, p Plan, o Options) error {
	r := &runner{o: o, start: time.Now()}
	if err := r.clusterHealthy(ctx, 0); err != nil {
		return fmt.Errorf("refusing to start the rollout (nothing was changed): %w", err)
	}
	for i, s := range p.Steps {
		if err := r.step(ctx, i+1, len(p.Steps), s); err != nil {
			// Say in what state the rollout leaves the cluster: a node
			// that failed its gate is back on its old slot by now, or
			// soon.
			r.printf("", PhaseHealth, "stopped: %v; waiting for the cluster to be healthy (up to %s)", err, r.o.ClusterTimeout)
			if herr := r.clusterHealthy(ctx, r.o.ClusterTimeout); herr != nil {
				r.printf("", PhaseHealth, "the cluster is NOT healthy: %v", herr)
			} else {
				r.printf("", PhaseHealth, "the cluster is healthy")
			}
			return err
		}
	}
	r.printf("", PhaseCompleted, "%d node(s) on %s in %s", p.count(), p.Target, time.Since(r.start).Round(100*time.Millisecond))
	return nil
}

type runner struct {
	o     Options
	start time.Time
	mu    sync.Mutex
}

// printf writes one progress line: time since the start, node, phase, text.
func (r *runner) printf(node string, ph Phase, format string, args ...any) {
	if r.o.Out == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if node == "" {
		node = "cluster"
	}
	fmt.Fprintf(r.o.Out, "%8s  %-30s %-14s %s\n", time.Since(r.start).Round(100*time.Millisecond), node, ph, fmt.Sprintf(format, args...))
}

// step upgrades one control plane, or a batch of workers at once.
func (r *runner) step(ctx context.Context, i, total int, s Step) error {
	// Before anything: the cluster is healthy now, and, for a control
	// plane, the other members are caught up.
	if err := r.clusterHealthy(ctx, 0); err != nil {
		return &NodeError{Node: s.Nodes[0].String(), Phase: PhaseCheck, Err: err}
	}
	for _, n := range s.Nodes {
		r.printf(n.String(), PhaseCheck, "step %d/%d: %s on %s", i, total, n.Role, n.Version)
		if n.MemberID == 0 {
			continue
		}
		if err := r.othersCaughtUp(ctx, n); err != nil {
			return &NodeError{Node: n.String(), Phase: PhaseCheck, Err: err}
		}
		if err := r.moveLeadership(ctx, n); err != nil {
			return &NodeError{Node: n.String(), Phase: PhaseLeader, Err: err}
		}
	}
	errs := make([]error, len(s.Nodes))
	var wg sync.WaitGroup
	for k, n := range s.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = r.node(ctx, n)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.printf("", PhaseHealth, "waiting for every check to pass (up to %s)", r.o.ClusterTimeout)
	if err := r.clusterHealthy(ctx, r.o.ClusterTimeout); err != nil {
		return &NodeError{Node: s.Nodes[len(s.Nodes)-1].String(), Phase: PhaseHealth, Err: err}
	}
	return nil
}

// node drains, upgrades and uncordons one node.
func (r *runner) node(ctx context.Context, n Node) error {
	began := time.Now()
	err := r.drained(ctx, n, PhaseUpgrade, func() error {
		r.printf(n.String(), PhaseUpgrade, "sending the bundle; the node hands off the VIP, reboots and passes its gate")
		return r.o.Upgrade(ctx, n)
	})
	if err != nil {
		return err
	}
	r.printf(n.String(), PhaseCompleted, "on %s after %s", r.o.Target, time.Since(began).Round(100*time.Millisecond))
	return nil
}

// drained runs change (phase ph) with n's Kubernetes node cordoned and
// drained, when there is a Kubernetes, and uncordons it afterwards — also
// after a failed change: the node is back on what it ran and gets its pods
// back.
func (r *runner) drained(ctx context.Context, n Node, ph Phase, change func() error) error {
	drained := false
	if r.o.Kube != nil {
		r.printf(n.String(), PhaseDrain, "cordon, evict its pods (up to %s)", r.o.DrainTimeout)
		evicted, err := r.drain(ctx, n)
		if err != nil {
			r.uncordon(ctx, n)
			return &NodeError{Node: n.String(), Phase: PhaseDrain, Err: err}
		}
		drained = true
		r.printf(n.String(), PhaseDrain, "%d pod(s) evicted", evicted)
	}
	if err := change(); err != nil {
		if drained {
			r.uncordon(ctx, n)
		}
		return &NodeError{Node: n.String(), Phase: ph, Err: err}
	}
	if drained {
		r.printf(n.String(), PhaseUncordon, "")
		if err := r.setUnschedulable(ctx, n, false); err != nil {
			return &NodeError{Node: n.String(), Phase: PhaseUncordon, Err: err}
		}
	}
	return nil
}

// uncordon makes a failed node schedulable again, best effort: the failure
// that brought us here is the one to report.
func (r *runner) uncordon(ctx context.Context, n Node) {
	if err := r.setUnschedulable(ctx, n, false); err != nil {
		r.printf(n.String(), PhaseUncordon, "could not uncordon: %v", err)
	}
}

func (r *runner) clusterHealthy(ctx context.Context, timeout time.Duration) error {
	return health.Wait(ctx, r.o.Nodes, r.o.Dial, timeout, nil)
}
