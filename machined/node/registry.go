package node

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/ballast-os/ballast/machined/machines"
	"github.com/ballast-os/ballast/pkg/config"
)

// This file gives the controllers the machine registry (machined/machines)
// on this node's etcd member, and this control plane's own record.

// registry is the machine registry through the node's local etcd client,
// looked up at each call (the member may restart).
type registry struct{ n *Node }

func (r registry) Put(ctx context.Context, rec machines.Record) error {
	cli, err := r.n.localEtcd()
	if err != nil {
		return err
	}
	return machines.Put(ctx, cli, rec)
}

func (r registry) Get(ctx context.Context, name string) (machines.Record, bool, error) {
	cli, err := r.n.localEtcd()
	if err != nil {
		return machines.Record{}, false, err
	}
	return machines.Get(ctx, cli, name)
}

func (r registry) Delete(ctx context.Context, name string) error {
	cli, err := r.n.localEtcd()
	if err != nil {
		return err
	}
	return machines.Delete(ctx, cli, name)
}

func (r registry) List(ctx context.Context) ([]machines.Record, error) {
	cli, err := r.n.localEtcd()
	if err != nil {
		return nil, err
	}
	return machines.List(ctx, cli)
}

// selfRecord is this control plane's machine record: its node name, its
// advertise address and its static addresses (never the VIP).
func (n *Node) selfRecord(cfg *config.Config) machines.Record {
	ip := n.advertiseIP(cfg)
	addrs := []string{ip}
	for _, iface := range cfg.Machine.Network.Interfaces {
		for _, a := range iface.Addresses {
			if s := strings.SplitN(a, "/", 2)[0]; !slices.Contains(addrs, s) {
				addrs = append(addrs, s)
			}
		}
	}
	return machines.Record{Name: n.nodeName(cfg), Role: machines.RoleControlPlane, Addresses: addrs, Updated: n.clock.Now().UTC()}
}

// approverSelf is the serving-CSR approver's view of this control plane.
func (n *Node) approverSelf() (machines.Record, machines.Reserved, error) {
	cfg := n.desired.Current()
	if cfg == nil {
		return machines.Record{}, machines.Reserved{}, errors.New("no machine config")
	}
	return n.selfRecord(cfg), machines.ClusterReserved(cfg), nil
}
