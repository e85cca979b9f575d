package network

import (
	"bytes"
	"context"
	"net"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/ballast-os/ballast/hack/netnstest"
	"github.com/ballast-os/ballast/pkg/config"
)

func addrsOf(t *testing.T, name string) []string {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	list, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range list {
		out = append(out, a.IPNet.String())
	}
	slices.Sort(out)
	return out
}

func staticRoutes(t *testing.T) []string {
	t.Helper()
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: protoStatic}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := range routes {
		k := keyOf(&routes[i])
		out = append(out, k.dst+" via "+k.gw)
	}
	slices.Sort(out)
	return out
}

// TestApplyStatic: static addresses and routes are applied; a route dropped
// from the config disappears, including one an earlier run added (found by
// its protocol); the addresses of an interface dropped from the config
// go; an interface that does not exist yet is an error until it appears,
// and then gets its address; applying twice changes nothing.
func TestApplyStatic(t *testing.T) {
	netnstest.InFreshNetns(t, func() {
		addLink := func(name string) {
			// A veth pair (the host kernel may lack the dummy driver).
			if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "-peer"}); err != nil {
				t.Fatal(err)
			}
			peer, err := netlink.LinkByName(name + "-peer")
			if err != nil {
				t.Fatal(err)
			}
			if err := netlink.LinkSetUp(peer); err != nil {
				t.Fatal(err)
			}
		}
		addLink("eth0")
		c := New(Options{})
		var out bytes.Buffer
		ctx := context.Background()
		eth0 := config.Interface{Interface: "eth0", Addresses: []string{"10.9.0.2/24"}, Routes: []config.Route{
			{Network: "10.10.0.0/16", Gateway: "10.9.0.1"}, {Gateway: "10.9.0.1"},
		}}
		eth1 := config.Interface{Interface: "eth1", Addresses: []string{"10.8.0.2/24"}}
		steps := []struct {
			name      string
			ifaces    []config.Interface
			before    func()
			wantErr   bool
			wantEth0  []string
			wantEth1  []string // nil: eth1 absent
			wantRoute []string
		}{
			{name: "apply", ifaces: []config.Interface{eth0, eth1}, wantErr: true,
				wantEth0: []string{"10.9.0.2/24"}, wantRoute: []string{"10.10.0.0/16 via 10.9.0.1", "default via 10.9.0.1"}},
			{name: "eth1 appears", ifaces: []config.Interface{eth0, eth1},
				before:   func() { addLink("eth1") },
				wantEth0: []string{"10.9.0.2/24"}, wantEth1: []string{"10.8.0.2/24"}, wantRoute: []string{"10.10.0.0/16 via 10.9.0.1", "default via 10.9.0.1"}},
			{name: "again: nothing changes", ifaces: []config.Interface{eth0, eth1},
				wantEth0: []string{"10.9.0.2/24"}, wantEth1: []string{"10.8.0.2/24"}, wantRoute: []string{"10.10.0.0/16 via 10.9.0.1", "default via 10.9.0.1"}},
			{name: "a route and eth1 dropped", ifaces: []config.Interface{{Interface: "eth0", Addresses: eth0.Addresses, Routes: eth0.Routes[1:]}},
				wantEth0: []string{"10.9.0.2/24"}, wantEth1: []string{}, wantRoute: []string{"default via 10.9.0.1"}},
			{name: "a static route left by an earlier run goes", ifaces: []config.Interface{{Interface: "eth0", Addresses: eth0.Addresses, Routes: eth0.Routes[1:]}},
				before: func() {
					l, _ := netlink.LinkByName("eth0")
					_, dst, _ := net.ParseCIDR("10.11.0.0/16")
					if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: net.ParseIP("10.9.0.1"), Protocol: protoStatic}); err != nil {
						t.Fatal(err)
					}
				},
				wantEth0: []string{"10.9.0.2/24"}, wantEth1: []string{}, wantRoute: []string{"default via 10.9.0.1"}},
		}
		for _, s := range steps {
			if s.before != nil {
				s.before()
			}
			out.Reset()
			err := c.apply(ctx, config.Network{Interfaces: s.ifaces}, &out)
			if (err != nil) != s.wantErr {
				t.Fatalf("%s: apply: %v, want error %v", s.name, err, s.wantErr)
			}
			if got := addrsOf(t, "eth0"); !slices.Equal(got, s.wantEth0) {
				t.Fatalf("%s: eth0 %v, want %v", s.name, got, s.wantEth0)
			}
			if s.wantEth1 != nil {
				if got := addrsOf(t, "eth1"); !slices.Equal(got, s.wantEth1) && !(len(got) == 0 && len(s.wantEth1) == 0) {
					t.Fatalf("%s: eth1 %v, want %v", s.name, got, s.wantEth1)
				}
			}
			if got := staticRoutes(t); !slices.Equal(got, s.wantRoute) {
				t.Fatalf("%s: static routes %v, want %v\n%s", s.name, got, s.wantRoute, out.String())
			}
			if s.name == "again: nothing changes" && out.Len() != 0 {
				t.Fatalf("a second apply did something:\n%s", out.String())
			}
		}
	})
}
