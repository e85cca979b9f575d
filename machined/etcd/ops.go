package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ballast-os/ballast/machined/errdefs"
)

// current returns the running member, or ErrNotRunning with what the
// member is doing instead.
func (m *Manager) current() (*member, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running == nil {
		return nil, fmt.Errorf("%w (%s)", ErrNotRunning, m.status)
	}
	return m.running, nil
}

// withClient calls fn with the client of the running local member.
func (m *Manager) withClient(ctx context.Context, fn func(ctx context.Context, cli *clientv3.Client) error) error {
	m.mu.Lock()
	cli, status := m.local, m.status
	m.mu.Unlock()
	if cli == nil {
		return fmt.Errorf("%w (%s)", ErrNotRunning, status)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return fn(cctx, cli)
}

// Members lists the cluster's members.
func (m *Manager) Members(ctx context.Context) (*clientv3.MemberListResponse, error) {
	var resp *clientv3.MemberListResponse
	err := m.withClient(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		var err error
		resp, err = cli.MemberList(ctx)
		return err
	})
	return resp, err
}

// MemberStatus reports the local member's status.
func (m *Manager) MemberStatus(_ context.Context) (*clientv3.StatusResponse, error) {
	mem, err := m.current()
	if err != nil {
		return nil, err
	}
	st, err := mem.status()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	return (*clientv3.StatusResponse)(st), nil
}

// Healthy is the etcd service's health check: the local member serves
// linearizable reads as a voting member.
func (m *Manager) Healthy(ctx context.Context) error {
	st, err := m.MemberStatus(ctx)
	if err != nil {
		return err
	}
	return m.withClient(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		if st.IsLearner {
			return fmt.Errorf("learner, not yet promoted")
		}
		if st.Leader == 0 {
			return fmt.Errorf("no leader")
		}
		_, err := cli.Get(ctx, "health")
		return err
	})
}

// quorumCheck refuses removing target when the healthy voting members left
// would be fewer than the new cluster's quorum.
func (m *Manager) quorumCheck(ctx context.Context, cli *clientv3.Client, target uint64) error {
	list, err := cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("list members: %w", err)
	}
	var tm *etcdserverpb.Member
	voters, healthy, targetHealthy := 0, 0, false
	for _, mem := range list.Members {
		if mem.ID == target {
			tm = mem
		}
		if mem.IsLearner {
			continue
		}
		voters++
		if m.memberHealthy(ctx, mem) {
			healthy++
			if mem.ID == target {
				targetHealthy = true
			}
		}
	}
	if tm == nil {
		return fmt.Errorf("%w: no etcd member with ID %x", errdefs.ErrNotFound, target)
	}
	if err := removalKeepsQuorum(voters, healthy, targetHealthy, tm.IsLearner); err != nil {
		return fmt.Errorf("removing %s: %w", memberName(tm), err)
	}
	return nil
}

// removalKeepsQuorum decides whether a member may be removed: the healthy
// voting members left must still form a quorum of the smaller cluster.
// Learners do not vote, so removing one is always safe.
func removalKeepsQuorum(voters, healthy int, targetHealthy, targetLearner bool) error {
	if targetLearner {
		return nil
	}
	remaining := voters - 1
	need := remaining/2 + 1
	left := healthy
	if targetHealthy {
		left--
	}
	if remaining == 0 || left < need {
		return fmt.Errorf("%w: it would leave %d healthy of %d voting members, and quorum needs %d (use --force to do it anyway)",
			ErrQuorum, left, remaining, need)
	}
	return nil
}

// memberHealthy reports whether a member serves a linearizable read, which
// needs it to be connected to a working quorum. (The Maintenance Status RPC
// is avoided: etcd panics when it is asked of a member just removed.)
func (m *Manager) memberHealthy(ctx context.Context, mem *etcdserverpb.Member) bool {
	if len(mem.ClientURLs) == 0 {
		return false
	}
	cli, err := m.newClient(mem.ClientURLs)
	if err != nil {
		return false
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = cli.Get(cctx, "health")
	return err == nil
}

func memberName(mem *etcdserverpb.Member) string {
	if mem.Name != "" {
		return fmt.Sprintf("%s (%x)", mem.Name, mem.ID)
	}
	return fmt.Sprintf("%x", mem.ID)
}

// Leave removes this node from the cluster, stops etcd and wipes its data.
// The node stays out until it reboots.
func (m *Manager) Leave(ctx context.Context, force bool) error {
	mem, err := m.current()
	if err != nil {
		return err
	}
	if !force {
		if err := m.CheckLeave(ctx); err != nil {
			return err
		}
	}
	if m.opts.BeforeLeave != nil {
		m.opts.BeforeLeave(ctx)
	}
	err = m.withClient(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		if _, err := m.moveLeaderAway(ctx, cli); err != nil {
			m.log.Warn("could not move leadership before leaving", "error", err)
		}
		// Ask the other members: etcd's strict reconfiguration check counts
		// the receiving member's peer connections, and this one's may be new.
		others, err := m.otherEndpoints(ctx, cli, mem.ID())
		if err != nil {
			return err
		}
		if len(others) == 0 {
			return m.removeWithRetry(ctx, cli, mem.ID())
		}
		ocli, err := m.newClient(others)
		if err != nil {
			return err
		}
		defer ocli.Close()
		return m.removeWithRetry(ctx, ocli, mem.ID())
	})
	if err != nil {
		return err
	}
	m.log.Info("left the etcd cluster", "id", fmt.Sprintf("%x", mem.ID()))
	m.publishMember("left the etcd cluster", "action", "left", "member", m.name())
	return m.send(ctx, request{kind: reqLeave})
}

// otherEndpoints are the client URLs of every member but self.
func (m *Manager) otherEndpoints(ctx context.Context, cli *clientv3.Client, self uint64) ([]string, error) {
	list, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	var out []string
	for _, mem := range list.Members {
		if mem.ID != self {
			out = append(out, mem.ClientURLs...)
		}
	}
	return out, nil
}

// Removal retries: while etcd reports the cluster unhealthy for
// reconfiguration, retry every removeRetryDelay for up to removeTimeout.
const (
	removeRetryDelay = 500 * time.Millisecond
	removeTimeout    = 20 * time.Second
)

// remover is the part of the etcd client member removal needs.
type remover interface {
	MemberRemove(ctx context.Context, id uint64) (*clientv3.MemberRemoveResponse, error)
}

// removeWithRetry removes a member, retrying while etcd reports the cluster
// unhealthy for reconfiguration (peer connections younger than its health
// interval right after a member restarted).
func (m *Manager) removeWithRetry(ctx context.Context, cli remover, id uint64) error {
	deadline := m.clock.Now().Add(removeTimeout)
	for {
		_, err := cli.MemberRemove(ctx, id)
		if err == nil {
			return nil
		}
		if !errors.Is(err, rpctypes.ErrUnhealthy) || !m.clock.Now().Before(deadline) {
			return fmt.Errorf("remove member %x: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.clock.After(removeRetryDelay):
		}
	}
}

// CheckLeave applies the quorum guard to this member leaving.
func (m *Manager) CheckLeave(ctx context.Context) error {
	mem, err := m.current()
	if err != nil {
		return err
	}
	return m.withClient(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		return m.quorumCheck(ctx, cli, mem.ID())
	})
}

// RemoveMember removes another member by ID.
func (m *Manager) RemoveMember(ctx context.Context, id uint64, force bool) error {
	if mem, err := m.current(); err == nil && mem.ID() == id {
		return m.Leave(ctx, force)
	}
	return m.withClient(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		if !force {
			if err := m.quorumCheck(ctx, cli, id); err != nil {
				return err
			}
		}
		if err := m.removeWithRetry(ctx, cli, id); err != nil {
			return err
		}
		m.log.Info("removed etcd member", "id", fmt.Sprintf("%x", id))
		m.publishMember(fmt.Sprintf("removed etcd member %x", id), "action", "removed-member", "id", fmt.Sprintf("%x", id))
		return nil
	})
}

// ForfeitLeadership moves leadership to another voting member when this
// member leads. It returns the new leader's ID (0 when nothing moved).
func (m *Manager) ForfeitLeadership(ctx context.Context) (uint64, error) {
	var to uint64
	err := m.withClient(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		var err error
		to, err = m.moveLeaderAway(ctx, cli)
		return err
	})
	return to, err
}

// moveLeaderAway hands leadership to a healthy voting member when this member
// leads; it returns the new leader (0 when this member was not the leader).
func (m *Manager) moveLeaderAway(ctx context.Context, cli *clientv3.Client) (uint64, error) {
	st, err := m.MemberStatus(ctx)
	if err != nil || st.Leader != st.Header.MemberId {
		return 0, err
	}
	to, err := m.pickTransferee(ctx, cli, st.Header.MemberId)
	if err != nil {
		return 0, err
	}
	if _, err := cli.MoveLeader(ctx, to); err != nil {
		return 0, err
	}
	return to, nil
}

func (m *Manager) pickTransferee(ctx context.Context, cli *clientv3.Client, self uint64) (uint64, error) {
	list, err := cli.MemberList(ctx)
	if err != nil {
		return 0, err
	}
	for _, mem := range list.Members {
		if mem.ID != self && !mem.IsLearner && m.memberHealthy(ctx, mem) {
			return mem.ID, nil
		}
	}
	return 0, fmt.Errorf("%w: no other healthy voting member to take over leadership", errdefs.ErrFailedPrecondition)
}

// Defrag defragments the local member.
func (m *Manager) Defrag(ctx context.Context) error {
	return m.withClient(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Defragment(ctx, m.clientURL())
		return err
	})
}

// Alarms lists the cluster's alarms.
func (m *Manager) Alarms(ctx context.Context) ([]*etcdserverpb.AlarmMember, error) {
	var out []*etcdserverpb.AlarmMember
	err := m.withClient(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		resp, err := cli.AlarmList(ctx)
		if err != nil {
			return err
		}
		out = resp.Alarms
		return nil
	})
	return out, err
}

// DisarmAlarms clears every alarm and returns what was cleared.
func (m *Manager) DisarmAlarms(ctx context.Context) ([]*etcdserverpb.AlarmMember, error) {
	var out []*etcdserverpb.AlarmMember
	err := m.withClient(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		resp, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{})
		if err != nil {
			return err
		}
		out = resp.Alarms
		return nil
	})
	return out, err
}

// Snapshot streams a consistent snapshot of the local member to w.
// It is not bounded by withClient's timeout: a large keyspace takes a while.
func (m *Manager) Snapshot(ctx context.Context, w io.Writer) error {
	m.mu.Lock()
	cli, status := m.local, m.status
	m.mu.Unlock()
	if cli == nil {
		return fmt.Errorf("%w (%s)", ErrNotRunning, status)
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}
