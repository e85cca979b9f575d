package node

import (
	"github.com/ballast-os/ballast/machined/etcd"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/supervisor"
)

// addressService follows the node's advertise address into etcd.
const addressService = "address"

// addressSpec is the service that follows the node's advertise address
// into etcd (etcd.AddressFollower). It runs only where the address can
// change: the machine API listens on every address (metal); a node whose
// API listens on one address advertises that one.
func (n *Node) addressSpec(mgr *etcd.Manager) (supervisor.Spec, bool) {
	if n.listenIP() != "" {
		return supervisor.Spec{}, false
	}
	f := &etcd.AddressFollower{Manager: mgr, Clock: n.clock, Node: func() (string, string, bool) {
		cfg := n.desired.Current()
		if cfg == nil {
			return "", "", false
		}
		return n.nodeName(cfg), n.advertiseIP(cfg), true
	}}
	return supervisor.Spec{
		ID:          addressService,
		Description: "follows the node's address (DHCP lease, static addresses) into etcd's advertised peer and client URLs",
		Runner:      runner.Goroutine(addressService, f.Run),
		Restart:     supervisor.Always,
	}, true
}
