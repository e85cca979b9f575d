package rollout

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/health"
)

// Node is one node of the plan as it was found.
type Node struct {
	health.Node
	Hostname string
	Version  string // the running build
	Slot     string // the slot it booted ("" on an install medium)
	// MemberID is the node's etcd member (control planes); EtcdLeader and
	// VIPHolder say what it held when the plan was made.
	MemberID   uint64
	EtcdLeader bool
	VIPHolder  bool
}

func (n Node) String() string {
	if n.Hostname != "" {
		return n.Hostname + " (" + n.Address + ")"
	}
	return n.Address
}

// Step is what the rollout does at once: one control plane, or a batch of
// up to MaxUnavailable workers.
type Step struct {
	Nodes []Node
}

// Plan is the order of a rollout.
type Plan struct {
	Target  string // the bundle's Ballast version
	Steps   []Step
	Skipped []Node // already on the target
}

// Inspect asks every node for what the plan needs: its build, and for the
// control planes their etcd member and whether they lead etcd or hold the
// VIP. A node that does not answer is an error: a rollout starts only on a
// cluster whose every node answers.
func Inspect(ctx context.Context, nodes []health.Node, dial health.Dialer) ([]Node, error) {
	out := make([]Node, 0, len(nodes))
	for _, hn := range nodes {
		n, err := inspect(ctx, hn, dial)
		if err != nil {
			return nil, &NodeError{Node: hn.Address, Phase: PhaseCheck, Err: err}
		}
		out = append(out, n)
	}
	return out, nil
}

func inspect(ctx context.Context, hn health.Node, dial health.Dialer) (Node, error) {
	n := Node{Node: hn}
	c, err := dial(hn)
	if err != nil {
		return n, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := c.Version(ctx, &machine.VersionRequest{})
	if err != nil {
		return n, fmt.Errorf("version: %w", err)
	}
	n.Hostname, n.Version, n.Slot = v.GetHostname(), v.GetVersion(), v.GetSlot()
	if hn.Role != config.TypeControlPlane {
		return n, nil
	}
	st, err := machine.NewEtcdServiceClient(c.Conn()).EtcdStatus(ctx, &machine.EtcdStatusRequest{})
	if err != nil {
		return n, fmt.Errorf("etcd status: %w", err)
	}
	n.MemberID = st.GetMemberId()
	n.EtcdLeader = st.GetLeader() != 0 && st.GetLeader() == st.GetMemberId()
	if vip, err := c.VIPStatus(ctx, &machine.VIPStatusRequest{}); err == nil {
		n.VIPHolder = vip.GetLocal()
	}
	return n, nil
}

// MakePlan orders the nodes: the control planes one at a time, those that
// lead etcd or hold the VIP last (so each moves once, to a node that already
// runs the target), then the workers in batches of maxUnavailable. Nodes
// already running target are skipped: a rollout stopped halfway resumes by
// being run again.
func MakePlan(nodes []Node, target string, maxUnavailable int) Plan {
	if maxUnavailable < 1 {
		maxUnavailable = 1
	}
	p := Plan{Target: target}
	var cps, workers []Node
	for _, n := range nodes {
		switch {
		case n.Version == target:
			p.Skipped = append(p.Skipped, n)
		case n.Role == config.TypeControlPlane:
			cps = append(cps, n)
		default:
			workers = append(workers, n)
		}
	}
	weight := func(n Node) int {
		w := 0
		if n.EtcdLeader {
			w++
		}
		if n.VIPHolder {
			w += 2
		}
		return w
	}
	sort.SliceStable(cps, func(i, j int) bool { return weight(cps[i]) < weight(cps[j]) })
	for _, n := range cps {
		p.Steps = append(p.Steps, Step{Nodes: []Node{n}})
	}
	for len(workers) > 0 {
		k := min(maxUnavailable, len(workers))
		p.Steps = append(p.Steps, Step{Nodes: workers[:k]})
		workers = workers[k:]
	}
	return p
}

// Print writes the plan as a table, then what each step does.
func (p Plan) Print(w io.Writer, o Options) {
	fmt.Fprintf(w, "rolling upgrade to %s: %d node(s) to upgrade, %d already on it\n\n", p.Target, p.count(), len(p.Skipped))
	fmt.Fprintf(w, "%-5s %-18s %-16s %-13s %-28s %s\n", "STEP", "NODE", "HOSTNAME", "ROLE", "RUNNING", "NOTE")
	for i, s := range p.Steps {
		for _, n := range s.Nodes {
			fmt.Fprintf(w, "%-5d %-18s %-16s %-13s %-28s %s\n", i+1, n.Address, n.Hostname, n.Role, running(n), note(n))
		}
	}
	for _, n := range p.Skipped {
		fmt.Fprintf(w, "%-5s %-18s %-16s %-13s %-28s %s\n", "-", n.Address, n.Hostname, n.Role, running(n), "already on the target: skipped")
	}
	fmt.Fprintf(w, "\neach step: cluster healthy and every other etcd member caught up (else refused) → etcd leadership moved off → "+
		"cordon and drain through the Eviction API (PodDisruptionBudgets respected, up to %s) → upgrade (the node hands off the VIP, "+
		"reboots into the new slot and must pass its health gate within %s, else it falls back) → uncordon → cluster healthy (up to %s)\n",
		o.DrainTimeout, o.HealthTimeout, o.ClusterTimeout)
}

func (p Plan) count() int {
	n := 0
	for _, s := range p.Steps {
		n += len(s.Nodes)
	}
	return n
}

func running(n Node) string {
	if n.Slot == "" {
		return n.Version
	}
	return n.Version + " (slot " + n.Slot + ")"
}

func note(n Node) string {
	var held []string
	if n.EtcdLeader {
		held = append(held, "etcd leader")
	}
	if n.VIPHolder {
		held = append(held, "VIP holder")
	}
	if len(held) == 0 {
		return ""
	}
	return strings.Join(held, ", ") + ": after the other control planes"
}
