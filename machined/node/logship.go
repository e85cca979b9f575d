package node

import (
	"context"

	"github.com/ballast-os/ballast/machined/kmsg"
	"github.com/ballast-os/ballast/machined/logship"
)

// logShipService sends the node's logs to machine.logging.destinations.
const logShipService = "log-ship"

// logShipper ships every service's log and the agent's own, and on a
// machine its kernel's (a container-mode node shares the host's kernel log
// and does not ship it).
func (n *Node) logShipper() *logship.Shipper {
	o := logship.Options{
		Logger:  n.log.With("component", logShipService),
		Desired: n.desired,
		Clock:   n.clock,
		Node: func() string {
			if cfg := n.desired.Current(); cfg != nil {
				return n.nodeName(cfg)
			}
			return ""
		},
		Sources:    n.logSources,
		Registerer: n.metrics,
	}
	if n.opts.Mode == ModeMetal {
		o.Kernel = func(ctx context.Context, send func(string) error) error {
			return kmsg.Read(ctx, kmsg.Path, true, send)
		}
	}
	return logship.New(o)
}

// logSources are the logs of every service and of the agent.
func (n *Node) logSources() []logship.Source {
	var out []logship.Source
	if n.opts.AgentLog != nil {
		out = append(out, logship.Source{Name: AgentLogID, Buffer: n.opts.AgentLog})
	}
	for _, st := range n.sup.List() {
		if b, err := n.sup.Logs(st.ID); err == nil {
			out = append(out, logship.Source{Name: st.ID, Buffer: b})
		}
	}
	return out
}
