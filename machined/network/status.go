package network

import (
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/config"
)

// routeProtocols names the rtnetlink protocols the report shows.
var routeProtocols = map[netlink.RouteProtocol]string{
	unix.RTPROT_KERNEL: "kernel", unix.RTPROT_BOOT: "boot", protoStatic: "static", protoDHCP: "dhcp", ProtoPods: "ballast-pods",
}

// Status reads the links, addresses and routes of the node's namespace
// from the kernel and adds the controller's resolvers and leases.
func (c *Controller) Status(n config.Network) (*machine.NetworkStatusResponse, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	resp := &machine.NetworkStatusResponse{}
	names := map[int]string{}
	for _, l := range links {
		a := l.Attrs()
		names[a.Index] = a.Name
		resp.Links = append(resp.Links, &machine.NetworkLink{
			Name: a.Name, Index: int32(a.Index), HardwareAddr: a.HardwareAddr.String(), Mtu: int32(a.MTU),
			State: a.OperState.String(), Kind: l.Type(),
		})
	}
	c.mu.Lock()
	dhcpAddrs := map[string]bool{}
	for name, l := range c.leases {
		if l.address != nil {
			dhcpAddrs[name+" "+l.address.String()] = true
		}
	}
	static := map[string]bool{}
	for k := range c.static {
		static[k] = true
	}
	c.mu.Unlock()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		link := names[a.LinkIndex]
		key := link + " " + a.IPNet.String()
		source := "other"
		switch {
		case dhcpAddrs[key]:
			source = "dhcp"
		case static[key]:
			source = "static"
		}
		lft := uint32(0)
		if a.ValidLft > 0 && a.ValidLft < 0xffffffff {
			lft = uint32(a.ValidLft)
		}
		resp.Addresses = append(resp.Addresses, &machine.NetworkAddress{Link: link, Address: a.IPNet.String(), Source: source, ValidLifetimeSeconds: lft})
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		dst := "default"
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones > 0 {
				dst = r.Dst.String()
			}
		}
		gw := ""
		if r.Gw != nil {
			gw = r.Gw.String()
		}
		proto, ok := routeProtocols[r.Protocol]
		if !ok {
			proto = fmt.Sprint(int(r.Protocol))
		}
		resp.Routes = append(resp.Routes, &machine.NetworkRoute{Destination: dst, Gateway: gw, Link: names[r.LinkIndex], Protocol: proto, Metric: int32(r.Priority)})
	}
	resp.Resolvers, resp.ResolversSource = c.Resolvers(n)
	c.mu.Lock()
	var ifaces []string
	for name := range c.leases {
		ifaces = append(ifaces, name)
	}
	slices.Sort(ifaces)
	for _, name := range ifaces {
		l := c.leases[name]
		dl := &machine.DHCPLease{Link: name, State: l.state, Dns: l.dns, Hostname: l.hostname}
		if l.address != nil {
			dl.Address = l.address.String()
			dl.Server = l.server.String()
			if l.router != nil {
				dl.Router = l.router.String()
			}
			dl.Obtained, dl.RenewAt, dl.Expires = timestamppb.New(l.obtained), timestamppb.New(l.renewAt), timestamppb.New(l.expires)
		}
		resp.Leases = append(resp.Leases, dl)
	}
	c.mu.Unlock()
	return resp, nil
}
