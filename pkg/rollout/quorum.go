package rollout

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/health"
)

// memberStatus is one control plane's view of its etcd member.
type memberStatus struct {
	node    health.Node
	id      uint64
	leader  uint64
	index   uint64 // committed
	applied uint64
	errs    []string
}

func (r *runner) statuses(ctx context.Context) ([]memberStatus, error) {
	var out []memberStatus
	for _, hn := range r.o.Nodes {
		if hn.Role != config.TypeControlPlane {
			continue
		}
		c, err := r.o.Dial(hn)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", hn.Address, err)
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := machine.NewEtcdServiceClient(c.Conn()).EtcdStatus(cctx, &machine.EtcdStatusRequest{})
		cancel()
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: etcd status: %w", hn.Address, err)
		}
		out = append(out, memberStatus{node: hn, id: st.GetMemberId(), leader: st.GetLeader(),
			index: st.GetRaftIndex(), applied: st.GetRaftAppliedIndex(), errs: st.GetErrors()})
	}
	return out, nil
}

// othersCaughtUp refuses to take n down unless every other member is
// healthy and has applied everything the leader had committed when we
// looked: with n gone, the others alone must hold every acknowledged write
// and a quorum.
func (r *runner) othersCaughtUp(ctx context.Context, n Node) error {
	sts, err := r.statuses(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrQuorum, err)
	}
	var committed uint64
	for _, s := range sts {
		if len(s.errs) > 0 {
			return fmt.Errorf("%w: member on %s reports %s", ErrQuorum, s.node.Address, strings.Join(s.errs, "; "))
		}
		if s.id == s.leader && s.index > committed {
			committed = s.index
		}
	}
	if committed == 0 {
		return fmt.Errorf("%w: no member names itself the leader", ErrQuorum)
	}
	deadline := time.Now().Add(r.o.CatchUpTimeout)
	for {
		var behind []string
		for _, s := range sts {
			if s.id != n.MemberID && s.applied < committed {
				behind = append(behind, fmt.Sprintf("%s has applied %d of %d", s.node.Address, s.applied, committed))
			}
		}
		if len(behind) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: other members are behind the leader after %s: %s", ErrQuorum, r.o.CatchUpTimeout, strings.Join(behind, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if sts, err = r.statuses(ctx); err != nil {
			return fmt.Errorf("%w: %w", ErrQuorum, err)
		}
	}
}

// moveLeadership asks n to hand etcd leadership to a caught-up member when
// it leads, so the cluster does not wait for an election when n goes down.
func (r *runner) moveLeadership(ctx context.Context, n Node) error {
	c, err := r.o.Dial(n.Node)
	if err != nil {
		return err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := machine.NewEtcdServiceClient(c.Conn()).EtcdForfeitLeadership(cctx, &machine.EtcdForfeitLeadershipRequest{})
	if err != nil {
		return fmt.Errorf("move etcd leadership off the node: %w", err)
	}
	if id := resp.GetNewLeader(); id != 0 {
		r.printf(n.String(), PhaseLeader, "etcd leadership moved to member %x", id)
	}
	return nil
}
