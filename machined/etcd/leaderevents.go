package etcd

import (
	"context"
	"strconv"

	"go.etcd.io/etcd/client/pkg/v3/types"

	"github.com/ballast-os/ballast/machined/events"
)

// watchLeader publishes a machine event each time this member sees another
// leader (or none), until ctx ends: etcd's own notice, no polling.
func (m *Manager) watchLeader(ctx context.Context, mem *member) {
	if m.opts.Events == nil {
		return
	}
	srv := mem.e.Server
	var last types.ID
	for {
		changed := srv.LeaderChangedNotify() // before reading, so no change is missed
		if lead := srv.Leader(); lead != last {
			last = lead
			term := strconv.FormatUint(srv.Term(), 10)
			if lead == types.ID(0) {
				m.opts.Events.Publish(events.EtcdLeader, "etcd", "no etcd leader", "leader", "", "term", term)
			} else {
				name := lead.String()
				if mb := srv.Cluster().Member(lead); mb != nil && mb.Name != "" {
					name = mb.Name
				}
				m.opts.Events.Publish(events.EtcdLeader, "etcd", "etcd leader is "+name, "leader", name,
					"leader_id", lead.String(), "term", term, "local", strconv.FormatBool(lead == srv.MemberID()))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// publishMember publishes a membership event of this node's member.
func (m *Manager) publishMember(msg string, fields ...string) {
	if m.opts.Events != nil {
		m.opts.Events.Publish(events.EtcdMember, "etcd", msg, fields...)
	}
}
