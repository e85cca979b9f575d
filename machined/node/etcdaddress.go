package node

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ballast-os/ballast/machined/etcd"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/supervisor"
)

// addressService follows the node's advertise address into etcd.
const addressService = "address"

// addressPoll is how often the advertise address is read; a new one must be
// seen twice in a row (a lease being replaced passes through no address).
const addressPoll = time.Second

// addressSpec is the service that feeds a changed advertise address (a new
// DHCP lease, a static address applied live) to etcd's address-change
// logic: the member starts again at the new address, its peer URL updated
// through the other members, its data and membership kept. It runs only
// where the address can change: the machine API listens on every address
// (metal); a node whose API listens on one address advertises that one.
func (n *Node) addressSpec(mgr *etcd.Manager) (supervisor.Spec, bool) {
	if n.listenIP() != "" {
		return supervisor.Spec{}, false
	}
	return supervisor.Spec{
		ID:          addressService,
		Description: "follows the node's address (DHCP lease, static addresses) into etcd's advertised peer and client URLs",
		Runner: runner.Goroutine(addressService, func(ctx context.Context, out io.Writer) error {
			return n.followAddress(ctx, out, mgr)
		}),
		Restart: supervisor.Always,
	}, true
}

// followAddress polls the advertise address and hands a stable new one to
// the etcd manager, until ctx ends.
func (n *Node) followAddress(ctx context.Context, out io.Writer, mgr *etcd.Manager) error {
	pending := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.clock.After(addressPoll):
		}
		cfg := n.desired.Current()
		if cfg == nil {
			continue
		}
		ip := n.advertiseIP(cfg)
		_, current := mgr.Address()
		if ip == current || ip == loopbackIP {
			pending = ""
			continue
		}
		if ip != pending {
			pending = ip
			continue
		}
		fmt.Fprintf(out, "advertise address changed from %s to %s: restarting the etcd member at it\n", current, ip)
		mgr.SetAddress(n.nodeName(cfg), ip)
		pending = ""
	}
}
