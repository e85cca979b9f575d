package node

import (
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/ballast-os/ballast/hack/netnstest"
	"github.com/ballast-os/ballast/pkg/config"
)

// TestGlobalAddressSkipsClusterAddresses: the advertise address is never the
// VIP (the holder carries it on its link, possibly first), a bridge's (the
// pod network's cni0) or one in the pod subnet — in a fresh namespace with
// exactly those addresses.
func TestGlobalAddressSkipsClusterAddresses(t *testing.T) {
	netnstest.InFreshNetns(t, func() {
		add := func(l netlink.Link, cidrs ...string) {
			if err := netlink.LinkAdd(l); err != nil {
				t.Fatal(err)
			}
			for _, c := range cidrs {
				a, _ := netlink.ParseAddr(c)
				if err := netlink.AddrAdd(l, a); err != nil {
					t.Fatal(err)
				}
			}
		}
		add(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "cni0"}}, "192.168.77.1/24")
		add(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "pod0"}, PeerName: "pod0-peer"}, "10.244.3.1/24")
		add(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0-peer"}, "10.5.0.254/32", "10.5.0.2/24")
		cfg := &config.Config{}
		cfg.Cluster.Network.PodSubnets = []string{"10.244.0.0/16"}
		cfg.Cluster.Network.ServiceSubnets = []string{"10.96.0.0/12"}
		cfg.Machine.Network.Interfaces = []config.Interface{{Interface: "eth0", VIP: &config.VIP{IP: "10.5.0.254"}}}
		if got := globalAddress(cfg); got != "10.5.0.2" {
			t.Fatalf("globalAddress = %q, want the node's own 10.5.0.2", got)
		}
		if got := globalAddress(nil); got == "" {
			t.Fatal("without a config (maintenance) an address is still found")
		}
	})
}
