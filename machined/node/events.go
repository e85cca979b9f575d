package node

import (
	"context"

	"github.com/ballast-os/ballast/machined/events"
)

// Events implements server.Machine: the node's machine events, fed by the
// supervisor's service events (publishServiceEvents) and by the components
// given n.events (config, VIP, etcd, upgrades).
func (n *Node) Events() *events.Ring { return n.events }

// publishServiceEvents subscribes to the supervisor at once and turns, in
// the background, every state change and health transition of a service
// into a machine event until ctx ends.
func (n *Node) publishServiceEvents(ctx context.Context) {
	sub := n.sup.Subscribe(ctx) // before any service starts: none is missed
	go func() {
		for ev := range sub {
			n.events.Publish(events.Service, ev.ID, ev.Message, "state", string(ev.State))
		}
	}()
}
