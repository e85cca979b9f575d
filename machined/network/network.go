// Package network is the node's network controller: it applies
// machine.network to the links of the node's network namespace through
// netlink (links up, MTU, static addresses and routes), runs a DHCPv4 client
// (github.com/insomniacslk/dhcp's nclient4) with renewal and rebinding on
// the interfaces that ask for it, writes the resolvers, and reports the live
// state. The same code runs as PID 1 on metal and in container mode inside
// a node's namespace.
package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/config"
)

// Route protocols of the routes the controller owns (rtnetlink's
// RTPROT_STATIC and RTPROT_DHCP), and of the pod network's routes to the
// other nodes' pod CIDRs (0x62 is unassigned): marking them lets each owner
// find and remove its stale routes and nobody else's.
const (
	protoStatic netlink.RouteProtocol = 4
	protoDHCP   netlink.RouteProtocol = 16
	ProtoPods   netlink.RouteProtocol = 0x62
)

// ErrNoLink is returned when a configured interface does not exist.
var ErrNoLink = errors.New("no such link")

// Options configures a Controller.
type Options struct {
	Logger *slog.Logger
	// Config returns the current machine config and a channel closed when
	// it changes.
	Config func() (*config.Config, <-chan struct{})
	// ResolvConf is the file the resolvers are written to.
	ResolvConf string
	// DHCPByDefault runs DHCP on every Ethernet link while the config names
	// no interface (and in maintenance mode, before there is a config): a
	// machine booted from PXE, an ISO or a disk image is reachable at once.
	DHCPByDefault bool
	// SetHostname sets the kernel's hostname from machine.network.hostname,
	// else from the DHCP lease (metal mode: the namespace's UTS is the
	// machine's).
	SetHostname bool
}

// Controller applies machine.network and keeps DHCP leases.
type Controller struct {
	opts Options

	mu       sync.Mutex
	leases   map[string]*leaseState // by link name
	static   map[string]bool        // "link addr" added from the config
	dhcpStop map[string]context.CancelFunc
}

// New returns a Controller; nothing happens until Run.
func New(opts Options) *Controller {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Controller{opts: opts, leases: map[string]*leaseState{}, static: map[string]bool{}, dhcpStop: map[string]context.CancelFunc{}}
}

// Run applies the config whenever it changes until ctx ends. Problems of one
// interface are reported to out and do not stop the others.
func (c *Controller) Run(ctx context.Context, out io.Writer) error {
	defer c.stopAllDHCP()
	var last string
	for {
		cfg, changed := c.opts.Config()
		if n, ok := c.effective(cfg); ok {
			err := c.apply(ctx, n, out)
			if msg := fmt.Sprint(err); err != nil && msg != last {
				fmt.Fprintf(out, "network: %v\n", err)
			}
			last = fmt.Sprint(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// effective is the network to apply for cfg (nil in maintenance mode):
// cfg's, with DHCP on every Ethernet link when it names no interface and
// Options.DHCPByDefault is set. False when there is nothing to apply.
func (c *Controller) effective(cfg *config.Config) (config.Network, bool) {
	var n config.Network
	if cfg != nil {
		n = cfg.Machine.Network
	}
	if !c.opts.DHCPByDefault || len(n.Interfaces) > 0 {
		return n, cfg != nil
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if isEthernet(l) {
			n.Interfaces = append(n.Interfaces, config.Interface{Interface: l.Attrs().Name, DHCP: true})
		}
	}
	return n, true
}

// isEthernet: a physical (or emulated) Ethernet device, not a bridge, veth,
// VLAN or loopback.
func isEthernet(l netlink.Link) bool {
	return l.Type() == "device" && l.Attrs().EncapType == "ether" && len(l.Attrs().HardwareAddr) == 6
}

// apply brings the links to the config: up, MTU, static addresses and
// routes, a DHCP client where asked (stopped where no longer asked).
func (c *Controller) apply(ctx context.Context, n config.Network, out io.Writer) error {
	var errs []error
	if lo, err := netlink.LinkByName("lo"); err == nil && lo.Attrs().Flags&net.FlagUp == 0 {
		// A booted machine starts with loopback down; a node's namespace
		// usually has it up already.
		if err := netlink.LinkSetUp(lo); err != nil {
			errs = append(errs, fmt.Errorf("lo: set up: %w", err))
		} else {
			fmt.Fprintln(out, "lo: up")
		}
	}
	wantDHCP := map[string]bool{}
	for _, iface := range n.Interfaces {
		link, err := netlink.LinkByName(iface.Interface)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", iface.Interface, ErrNoLink))
			continue
		}
		if iface.MTU > 0 && link.Attrs().MTU != iface.MTU {
			if err := netlink.LinkSetMTU(link, iface.MTU); err != nil {
				errs = append(errs, fmt.Errorf("%s: set MTU %d: %w", iface.Interface, iface.MTU, err))
			}
		}
		if link.Attrs().Flags&net.FlagUp == 0 {
			if err := netlink.LinkSetUp(link); err != nil {
				errs = append(errs, fmt.Errorf("%s: set up: %w", iface.Interface, err))
			} else {
				fmt.Fprintf(out, "%s: up\n", iface.Interface)
			}
		}
		errs = append(errs, c.applyStatic(link, iface, out))
		if iface.DHCP {
			wantDHCP[iface.Interface] = true
			c.startDHCP(ctx, iface.Interface, out)
		}
	}
	c.mu.Lock()
	for name, stop := range c.dhcpStop {
		if !wantDHCP[name] {
			stop()
			delete(c.dhcpStop, name)
			fmt.Fprintf(out, "%s: DHCP stopped (no longer configured)\n", name)
		}
	}
	c.mu.Unlock()
	errs = append(errs, c.writeResolvers(n, out), c.setHostname(n, out))
	return errors.Join(errs...)
}

// DHCPHostname is the host name a DHCP server gave (the first by link name
// when several did), "" for none.
func (c *Controller) DHCPHostname() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	name := ""
	for _, l := range c.leases {
		if l.hostname != "" && (name == "" || l.hostname < name) {
			name = l.hostname
		}
	}
	return name
}

// setHostname sets the kernel hostname (Options.SetHostname) to the
// config's, else the first DHCP lease's.
func (c *Controller) setHostname(n config.Network, out io.Writer) error {
	if !c.opts.SetHostname {
		return nil
	}
	name := n.Hostname
	if name == "" {
		name = c.DHCPHostname()
	}
	if cur, _ := os.Hostname(); name == "" || cur == name {
		return nil
	}
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("set hostname %q: %w", name, err)
	}
	fmt.Fprintf(out, "hostname: %s\n", name)
	return nil
}

// applyStatic adds the interface's static addresses and routes and removes
// the ones an earlier config of this run added and this one does not have.
func (c *Controller) applyStatic(link netlink.Link, iface config.Interface, out io.Writer) error {
	var errs []error
	name := link.Attrs().Name
	want := map[string]bool{}
	for _, a := range iface.Addresses {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: address %q: %w", name, a, err))
			continue
		}
		want[name+" "+addr.IPNet.String()] = true
		if err := netlink.AddrReplace(link, addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: address %s: %w", name, a, err))
			continue
		}
		c.mu.Lock()
		if !c.static[name+" "+addr.IPNet.String()] {
			fmt.Fprintf(out, "%s: address %s\n", name, addr.IPNet)
		}
		c.static[name+" "+addr.IPNet.String()] = true
		c.mu.Unlock()
	}
	c.mu.Lock()
	for key := range c.static {
		l, cidr, _ := strings.Cut(key, " ")
		if l != name || want[key] {
			continue
		}
		if addr, err := netlink.ParseAddr(cidr); err == nil {
			if err := netlink.AddrDel(link, addr); err == nil {
				fmt.Fprintf(out, "%s: address %s removed\n", name, cidr)
			}
		}
		delete(c.static, key)
	}
	c.mu.Unlock()
	for _, r := range iface.Routes {
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Protocol: protoStatic, Priority: r.Metric}
		if r.Network != "" {
			_, dst, err := net.ParseCIDR(r.Network)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: route %q: %w", name, r.Network, err))
				continue
			}
			route.Dst = dst
		}
		if r.Gateway != "" {
			route.Gw = net.ParseIP(r.Gateway)
		}
		if err := netlink.RouteReplace(route); err != nil {
			errs = append(errs, fmt.Errorf("%s: route %s via %s: %w", name, orDefault(r.Network), r.Gateway, err))
		}
	}
	return errors.Join(errs...)
}

func orDefault(cidr string) string {
	if cidr == "" {
		return "default"
	}
	return cidr
}

// Resolvers are the node's DNS servers: machine.network.nameservers, else
// those of the DHCP leases; source says which.
func (c *Controller) Resolvers(n config.Network) (servers []string, source string) {
	if len(n.Nameservers) > 0 {
		return n.Nameservers, "config"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.leases))
	for name := range c.leases {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, d := range c.leases[name].dns {
			if !slices.Contains(servers, d) {
				servers = append(servers, d)
			}
		}
	}
	if len(servers) == 0 {
		return nil, "none"
	}
	return servers, "dhcp"
}

// writeResolvers writes the resolv.conf when it changed.
func (c *Controller) writeResolvers(n config.Network, out io.Writer) error {
	if c.opts.ResolvConf == "" {
		return nil
	}
	servers, source := c.Resolvers(n)
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by machined (resolvers from %s).\n", source)
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if old, err := os.ReadFile(c.opts.ResolvConf); err == nil && string(old) == b.String() {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(c.opts.ResolvConf), 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(c.opts.ResolvConf, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	fmt.Fprintf(out, "resolvers (%s): %s\n", source, strings.Join(servers, ", "))
	return nil
}
