package etcd

import (
	"context"
	"errors"

	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/embed"
)

// errLearnerBusy means other nodes hold every learner slot of the cluster.
var errLearnerBusy = errors.New("another learner is catching up")

// found is a reachable cluster.
type found struct {
	cli      *clientv3.Client
	endpoint string
	members  []*etcdserverpb.Member
	id       uint64
}

// candidates are the client URLs where existing members may answer: the
// control-plane endpoint's host and the static peers, never this node.
func (m *Manager) candidates() []string {
	var out []string
	for _, h := range m.config().ControlPlaneAddrs() {
		host, port := h, strconv.Itoa(ClientPort)
		if hh, pp, err := net.SplitHostPort(h); err == nil {
			host, port = hh, pp
		}
		if host == m.advertiseIP() {
			continue
		}
		u := "https://" + net.JoinHostPort(host, port)
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// discover finds a cluster with quorum through the candidates. It returns
// nil, nil when none answers.
func (m *Manager) discover(ctx context.Context) (*found, error) {
	for _, ep := range reachable(ctx, m.candidates()) {
		cli, err := m.newClient([]string{ep})
		if err != nil {
			return nil, err
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := cli.MemberList(cctx)
		cancel()
		if err != nil {
			cli.Close()
			continue
		}
		// Talk to every voting member from now on, not just the one that
		// answered (learners refuse writes, leases and membership changes).
		var eps []string
		for _, mem := range resp.Members {
			if !mem.IsLearner {
				eps = append(eps, mem.ClientURLs...)
			}
		}
		if len(eps) > 0 {
			cli.SetEndpoints(eps...)
		}
		return &found{cli: cli, endpoint: ep, members: resp.Members, id: resp.Header.ClusterId}, nil
	}
	return nil, nil
}

// reachable keeps the endpoints that accept a TCP connection within a short
// time, probed concurrently: a gRPC client would retry a refused connection
// until its deadline, which makes every absent peer cost seconds.
func reachable(ctx context.Context, endpoints []string) []string {
	ok := make([]bool, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 500 * time.Millisecond}
			if c, err := d.DialContext(ctx, "tcp", u.Host); err == nil {
				c.Close()
				ok[i] = true
			}
		}()
	}
	wg.Wait()
	var out []string
	for i, ep := range endpoints {
		if ok[i] {
			out = append(out, ep)
		}
	}
	return out
}

// join adds this node as a learner, starts it, waits until it is in sync
// and promotes it. An entry left under this node's name or peer URL by an
// earlier failed try is removed first (this node has no data, so it is stale).
func (m *Manager) join(ctx context.Context, f *found, out io.Writer) (*member, error) {
	m.setStatus("joining the cluster through " + f.endpoint)
	// Joins are serialized through a lock in etcd, from the add until the
	// new member has started: raft drops a membership change proposed while
	// another is pending (etcd then waits for it until the caller's
	// deadline), and a member validates its initial cluster against the
	// membership when it starts, which must not have grown meanwhile.
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	unlock, err := lockJoin(lctx, f.cli)
	if err != nil {
		cancel()
		return nil, err
	}
	for _, mem := range f.members {
		if mem.Name == m.name() || slices.Contains(mem.PeerURLs, m.peerURL()) {
			m.log.Info("removing a stale etcd member left by an earlier try", "id", fmt.Sprintf("%x", mem.ID), "name", mem.Name, "learner", mem.IsLearner)
			if _, err := f.cli.MemberRemove(lctx, mem.ID); err != nil && !errors.Is(err, rpctypes.ErrMemberNotFound) {
				unlock()
				cancel()
				return nil, fmt.Errorf("remove stale member %x: %w", mem.ID, err)
			}
		}
	}
	added, err := f.cli.MemberAddAsLearner(lctx, []string{m.peerURL()})
	cancel()
	if err != nil {
		unlock()
		if errors.Is(err, rpctypes.ErrTooManyLearners) {
			m.setStatus("waiting for other nodes' joins to finish (at most 4 learners at a time)")
			return nil, errLearnerBusy
		}
		return nil, fmt.Errorf("add learner: %w", err)
	}
	myID := added.Member.ID
	var initial []string
	for _, mem := range added.Members {
		name := mem.Name
		if mem.ID == myID {
			name = m.name()
		}
		for _, u := range mem.PeerURLs {
			initial = append(initial, name+"="+u)
		}
	}
	m.log.Info("added as etcd learner", "id", fmt.Sprintf("%x", myID), "initial_cluster", strings.Join(initial, ","))
	m.publishMember("joined the etcd cluster as a learner", "action", "joined", "member", m.name(), "id", fmt.Sprintf("%x", myID))
	mem, err := startMember(ctx, m.memberConfig(embed.ClusterStateFlagExisting, strings.Join(initial, ","), ""), out)
	unlock()
	if err != nil {
		_ = m.wipe() // a half-started member's data would make the next try start as a member
		return nil, err
	}
	m.awaitPeers(ctx, f.cli)
	if err := m.promote(ctx, lockedPromoter{f.cli}, myID); err != nil {
		mem.Close()
		_ = m.wipe()
		return nil, err
	}
	return mem, nil
}

// Promotion timing: the first retry comes after promoteFirstDelay, each
// next one after twice as long up to promoteMaxDelay; a learner not in sync
// after promoteTimeout is given up on (the join is undone and retried).
const (
	promoteFirstDelay = 200 * time.Millisecond
	promoteMaxDelay   = 500 * time.Millisecond
	promoteTimeout    = 5 * time.Minute
)

// promoter is the part of the etcd client promotion needs.
type promoter interface {
	MemberPromote(ctx context.Context, id uint64) (*clientv3.MemberPromoteResponse, error)
}

// joinLockKey serializes member adds of joining nodes.
const joinLockKey = "/ballast/locks/etcd-join"

// lockJoin takes the cluster's join lock; the returned func releases it.
// The lock lives on a session lease, so a node that dies holding it frees
// it after 10 s.
func lockJoin(ctx context.Context, cli *clientv3.Client) (func(), error) {
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		return nil, fmt.Errorf("join lock session: %w", err)
	}
	mu := concurrency.NewMutex(sess, joinLockKey)
	if err := mu.Lock(ctx); err != nil {
		_ = sess.Close()
		return nil, fmt.Errorf("join lock: %w", err)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = mu.Unlock(uctx)
		_ = sess.Close()
	}, nil
}

// lockedPromoter promotes under the join lock: learners promoted at once
// would propose membership changes at once, and raft drops all but one
// (each dropped call then waits out its deadline).
type lockedPromoter struct{ cli *clientv3.Client }

func (p lockedPromoter) MemberPromote(ctx context.Context, id uint64) (*clientv3.MemberPromoteResponse, error) {
	unlock, err := lockJoin(ctx, p.cli)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return p.cli.MemberPromote(ctx, id)
}

// promoteHoldoff is how long a new learner waits for the other configured
// peers to be added, counted from the last time the membership grew (joins
// go one at a time, each ~0.1 s on an idle machine, longer on a busy one);
// promoteHoldoffMax bounds the whole wait.
const (
	promoteHoldoff    = 3 * time.Second
	promoteHoldoffMax = 30 * time.Second
)

// awaitPeers holds a new learner's promotion until every peer of
// cluster.etcd.peers is a member, or the membership stopped growing for
// promoteHoldoff. Peers added while the bootstrap node is the only voter
// skip etcd's 5 s connectivity window (see maxLearners); a learner promoted
// early would make the next peers wait it out.
func (m *Manager) awaitPeers(ctx context.Context, cli *clientv3.Client) {
	peers := m.config().Cluster.Etcd.Peers
	if len(peers) == 0 {
		return
	}
	start := m.clock.Now()
	deadline := start.Add(promoteHoldoff)
	members := 0
	for now := start; now.Before(deadline) && now.Sub(start) < promoteHoldoffMax; now = m.clock.Now() {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := cli.MemberList(cctx)
		cancel()
		if err == nil {
			if peersAreMembers(peers, resp.Members) {
				return
			}
			if len(resp.Members) > members {
				members = len(resp.Members)
				deadline = now.Add(promoteHoldoff)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-m.clock.After(100 * time.Millisecond):
		}
	}
}

// peersAreMembers reports whether every peer (host or host:port) is the
// host of some member's peer URL.
func peersAreMembers(peers []string, members []*etcdserverpb.Member) bool {
	hosts := map[string]bool{}
	for _, mem := range members {
		for _, u := range mem.PeerURLs {
			if pu, err := url.Parse(u); err == nil {
				hosts[pu.Hostname()] = true
			}
		}
	}
	for _, p := range peers {
		h := p
		if host, _, err := net.SplitHostPort(p); err == nil {
			h = host
		}
		if !hosts[h] {
			return false
		}
	}
	return true
}

// promote makes the learner a voting member once it has caught up.
func (m *Manager) promote(ctx context.Context, cli promoter, id uint64) error {
	m.setStatus("learner: catching up before promotion")
	delay := promoteFirstDelay
	deadline := m.clock.Now().Add(promoteTimeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cli.MemberPromote(cctx, id)
		cancel()
		if err == nil {
			m.log.Info("promoted to voting etcd member", "id", fmt.Sprintf("%x", id))
			m.publishMember("promoted to a voting etcd member", "action", "promoted", "member", m.name(), "id", fmt.Sprintf("%x", id))
			return nil
		}
		if errors.Is(err, rpctypes.ErrMemberNotLearner) {
			// A control plane that saw every configured peer join promoted
			// it first (see promotePeers).
			m.log.Info("promoted to voting etcd member by another member", "id", fmt.Sprintf("%x", id))
			m.publishMember("promoted to a voting etcd member", "action", "promoted", "member", m.name(), "id", fmt.Sprintf("%x", id))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !m.clock.Now().Before(deadline) {
			return fmt.Errorf("promote learner %x: not promoted within %s: %w", id, promoteTimeout, err)
		}
		if !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) {
			m.log.Warn("promote failed; retrying", "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.clock.After(delay):
		}
		delay = min(delay*2, promoteMaxDelay)
	}
}

// checkOwnMembership repairs this running member's entry in the cluster:
//
//   - a peer URL older than this node's address is corrected: the address
//     changed while no quorum could record it at start (updateOwnPeerURL),
//     and the other members cannot reach this one until it is fixed;
//   - a learner is promoted: the node was stopped (kill -9, power loss)
//     after it was added as a learner and before its join promoted it, and
//     starting from its data it would otherwise stay a learner for good.
//
// Both need quorum, so they are tried on every membership check until they
// succeed.
func (m *Manager) checkOwnMembership(ctx context.Context, id uint64) {
	m.mu.Lock()
	local := m.local
	m.mu.Unlock()
	if local == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var members []*etcdserverpb.Member
	if list, err := local.MemberList(cctx); err == nil {
		members = list.Members
	} else {
		// A learner does not serve the member list: ask the cluster.
		f, err := m.discover(cctx)
		if err != nil || f == nil {
			return
		}
		f.cli.Close()
		members = f.members
	}
	var own *etcdserverpb.Member
	var others []string
	for _, mem := range members {
		if mem.ID == id {
			own = mem
		} else {
			others = append(others, mem.ClientURLs...)
		}
	}
	urlOK := own != nil && len(own.PeerURLs) == 1 && own.PeerURLs[0] == m.peerURL()
	if own == nil || (urlOK && !own.IsLearner) {
		return
	}
	// Through the other members: a learner's own endpoint refuses both. A
	// member alone is its own quorum and records its new address itself.
	through := others
	if len(through) == 0 {
		if own.IsLearner {
			return
		}
		through = []string{m.clientURL()}
	}
	cli, err := m.newClient(through)
	if err != nil {
		return
	}
	defer cli.Close()
	if !urlOK {
		if _, err := cli.MemberUpdate(cctx, id, []string{m.peerURL()}); err != nil {
			m.log.Warn("cannot correct this member's peer URL yet", "error", err)
			return
		}
		m.log.Info("address changed: peer URL corrected while running", "id", fmt.Sprintf("%x", id), "old", own.PeerURLs, "new", m.peerURL())
	}
	if own.IsLearner {
		m.setStatus("learner: catching up before promotion")
		if _, err := cli.MemberPromote(cctx, id); err != nil {
			if !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) {
				m.log.Warn("cannot promote this learner yet", "error", err)
			}
			return
		}
		m.log.Info("promoted to voting etcd member after a restart during its join", "id", fmt.Sprintf("%x", id))
		m.publishMember("promoted to a voting etcd member", "action", "promoted", "member", m.name(), "id", fmt.Sprintf("%x", id))
		m.setStatus("running")
	}
}

// updateOwnPeerURL fixes this member's peer URL in the cluster when the
// node's address changed since it joined: the other members are told first,
// so they can reach it as soon as it starts. The member is found by its
// recorded ID, or by name when none was recorded.
func (m *Manager) updateOwnPeerURL(ctx context.Context) {
	f, err := m.discover(ctx)
	if err != nil || f == nil {
		return // alone or unreachable: nothing to update through
	}
	defer f.cli.Close()
	myID := m.rememberedID()
	for _, mem := range f.members {
		if mem.ID != myID && mem.Name != m.name() {
			continue
		}
		if len(mem.PeerURLs) == 1 && mem.PeerURLs[0] == m.peerURL() {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := f.cli.MemberUpdate(cctx, mem.ID, []string{m.peerURL()})
		cancel()
		if err != nil {
			m.log.Warn("cannot update this member's peer URL", "error", err)
			return
		}
		m.log.Info("address changed: peer URL updated", "id", fmt.Sprintf("%x", mem.ID), "old", mem.PeerURLs, "new", m.peerURL())
		return
	}
}
