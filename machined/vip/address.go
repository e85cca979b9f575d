package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netlink"
)

// addressLifetime is the valid lifetime, in seconds (the kernel's unit),
// each refresh gives the VIP. A holder that stops refreshing (frozen,
// partitioned, dead) loses the address when it runs out, whatever its own
// process does; see docs/vip.md for how the TTL accounts for it.
const addressLifetime = 1

// Addresser puts the VIP on a link and takes it off. The netlink one is the
// real thing; tests of the election may use a fake.
type Addresser interface {
	// Add adds the address (or refreshes its lifetime when present).
	Add(link string, ip netip.Addr) error
	// Remove removes the address; absent is not an error.
	Remove(link string, ip netip.Addr) error
	// Announce sends a gratuitous ARP for ip from link's hardware address.
	Announce(link string, ip netip.Addr) error
}

// Netlink is the Addresser of the node's own network namespace, through
// vishvananda/netlink and mdlayher/arp.
type Netlink struct{}

var _ Addresser = Netlink{}

func vipAddr(ip netip.Addr) *netlink.Addr {
	return &netlink.Addr{
		IPNet:       &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)},
		ValidLft:    addressLifetime,
		PreferedLft: addressLifetime,
	}
}

// Add implements Addresser: RTM_NEWADDR with NLM_F_REPLACE, which sets the
// lifetime again on an address already present.
func (Netlink) Add(link string, ip netip.Addr) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("vip: link %s: %w", link, err)
	}
	if err := netlink.AddrReplace(l, vipAddr(ip)); err != nil {
		return fmt.Errorf("vip: add %s to %s: %w", ip, link, err)
	}
	return nil
}

// Remove implements Addresser.
func (Netlink) Remove(link string, ip netip.Addr) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("vip: link %s: %w", link, err)
	}
	if err := netlink.AddrDel(l, vipAddr(ip)); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("vip: remove %s from %s: %w", ip, link, err)
	}
	return nil
}

// Announce implements Addresser: a gratuitous ARP request (sender and
// target address both the VIP) to the broadcast address, which makes every
// neighbour on the segment point its entry for the VIP at this link.
func (Netlink) Announce(link string, ip netip.Addr) error {
	ifi, err := net.InterfaceByName(link)
	if err != nil {
		return fmt.Errorf("vip: link %s: %w", link, err)
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return fmt.Errorf("vip: arp on %s: %w", link, err)
	}
	defer c.Close()
	p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, ip, ethernet.Broadcast, ip)
	if err != nil {
		return fmt.Errorf("vip: gratuitous arp: %w", err)
	}
	if err := c.WriteTo(p, ethernet.Broadcast); err != nil {
		return fmt.Errorf("vip: gratuitous arp on %s: %w", link, err)
	}
	return nil
}
