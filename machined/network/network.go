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
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/machined/clock"

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
	// Clock times the DHCP client's renewals, rebinding and expiry (the
	// real clock by default).
	Clock clock.Clock
}

// leaseOps are the DHCP client's actions on the wire and on the link;
// tests of the lease state machine replace them.
type leaseOps interface {
	renew(ctx context.Context, name string, lease *nclient4.Lease) (*nclient4.Lease, error)
	bind(name string, lease *nclient4.Lease, state string, out io.Writer) error
	unbind(name string, out io.Writer)
}

// Controller applies machine.network and keeps DHCP leases.
type Controller struct {
	opts Options

	ops leaseOps // the Controller itself, but in tests

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
	if opts.Clock == nil {
		opts.Clock = clock.Real()
	}
	c := &Controller{opts: opts, leases: map[string]*leaseState{}, static: map[string]bool{}, dhcpStop: map[string]context.CancelFunc{}}
	c.ops = c
	return c
}

// Reconcile timing: a full pass every resyncInterval even when nothing was
// seen to change (an address someone removed, a missed event); after a
// failed pass, again after a back-off from retryMin doubling to retryMax.
// Link events are gathered for linkSettle before a pass.
const (
	resyncInterval = 15 * time.Second
	retryMin       = 500 * time.Millisecond
	retryMax       = 15 * time.Second
	linkSettle     = 50 * time.Millisecond
)

// Run reconciles the links with the config until ctx ends: on every config
// change, every link that appears, changes or goes (netlink link updates),
// every resyncInterval, and after a failed pass with back-off. Problems of
// one interface are reported to out and do not stop the others.
func (c *Controller) Run(ctx context.Context, out io.Writer) error {
	defer c.stopAllDHCP()
	links := subscribeLinks(ctx, c.opts.Logger)
	var last string
	retry := retryMin
	for {
		cfg, changed := c.opts.Config()
		wait := resyncInterval
		if n, ok := c.effective(cfg); ok {
			err := c.apply(ctx, n, out)
			if msg := fmt.Sprint(err); err != nil && msg != last {
				fmt.Fprintf(out, "network: %v (retrying)\n", err)
			}
			last = fmt.Sprint(err)
			if err != nil {
				wait, retry = retry, min(retry*2, retryMax)
			} else {
				retry = retryMin
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-links:
			settle(ctx, links)
		case <-time.After(wait):
		}
	}
}

// settle waits linkSettle, dropping the link events that arrive meanwhile
// (a new veth pair or a pod's links come as bursts).
func settle(ctx context.Context, links <-chan struct{}) {
	t := time.NewTimer(linkSettle)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-links:
		case <-t.C:
			return
		}
	}
}

// subscribeLinks returns a channel that receives (coalesced) whenever a
// link of the namespace appears, changes or goes, until ctx ends. A broken
// subscription is made again after a second; the resync covers the gap.
func subscribeLinks(ctx context.Context, log *slog.Logger) <-chan struct{} {
	kick := make(chan struct{}, 1)
	go func() {
		for ctx.Err() == nil {
			updates := make(chan netlink.LinkUpdate, 64)
			done := make(chan struct{})
			failed := make(chan struct{}, 1)
			err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
				ErrorCallback: func(err error) {
					log.Warn("link subscription failed; subscribing again", "error", err)
					select {
					case failed <- struct{}{}:
					default:
					}
				},
			})
			if err != nil {
				log.Warn("cannot subscribe to link updates; relying on the resync", "error", err)
			} else {
			loop:
				for {
					select {
					case <-ctx.Done():
						break loop
					case <-failed:
						break loop
					case _, ok := <-updates:
						if !ok {
							break loop
						}
						select {
						case kick <- struct{}{}:
						default:
						}
					}
				}
				close(done)
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return kick
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
	configured := map[string]bool{}
	var wantRoutes []routeKey
	for _, iface := range n.Interfaces {
		configured[iface.Interface] = true
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
		routes, err := c.applyStatic(link, iface, out)
		wantRoutes = append(wantRoutes, routes...)
		errs = append(errs, err)
		if iface.DHCP {
			wantDHCP[iface.Interface] = true
			c.startDHCP(ctx, iface.Interface, out)
		}
	}
	errs = append(errs, c.dropStaleAddresses(configured, out), dropStaleRoutes(wantRoutes, out))
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

// DHCPNTPServers are the NTP servers the DHCP leases named, by link name.
func (c *Controller) DHCPNTPServers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.leases))
	for name := range c.leases {
		names = append(names, name)
	}
	slices.Sort(names)
	var out []string
	for _, name := range names {
		for _, s := range c.leases[name].ntp {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
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
// the addresses an earlier config of this run added and this one does not
// have. It returns the routes it keeps.
func (c *Controller) applyStatic(link netlink.Link, iface config.Interface, out io.Writer) ([]routeKey, error) {
	var errs []error
	var keep []routeKey
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
		keep = append(keep, keyOf(route))
		if err := netlink.RouteReplace(route); err != nil {
			errs = append(errs, fmt.Errorf("%s: route %s via %s: %w", name, orDefault(r.Network), r.Gateway, err))
		}
	}
	return keep, errors.Join(errs...)
}

// routeKey identifies a route the controller owns.
type routeKey struct {
	link   int
	dst    string
	gw     string
	metric int
}

func keyOf(r *netlink.Route) routeKey {
	dst := "default"
	if r.Dst != nil {
		if ones, _ := r.Dst.Mask.Size(); ones > 0 || !r.Dst.IP.IsUnspecified() {
			dst = r.Dst.String()
		}
	}
	gw := ""
	if r.Gw != nil {
		gw = r.Gw.String()
	}
	metric := r.Priority
	if v6 := (r.Dst != nil && r.Dst.IP.To4() == nil) || (r.Gw != nil && r.Gw.To4() == nil); v6 && metric == 0 {
		metric = 1024 // the kernel's default IPv6 metric, what it reports for 0
	}
	return routeKey{link: r.LinkIndex, dst: dst, gw: gw, metric: metric}
}

// dropStaleRoutes deletes every route of the controller's protocol (static
// routes from machine.network, whichever run added them) that want lacks.
func dropStaleRoutes(want []routeKey, out io.Writer) error {
	var errs []error
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlink.RouteListFiltered(family, &netlink.Route{Protocol: protoStatic}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			errs = append(errs, fmt.Errorf("list static routes: %w", err))
			continue
		}
		for i := range routes {
			r := &routes[i]
			if slices.Contains(want, keyOf(r)) {
				continue
			}
			if err := netlink.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("remove route %s: %w", keyOf(r).dst, err))
				continue
			}
			fmt.Fprintf(out, "route %s via %s removed (no longer configured)\n", keyOf(r).dst, keyOf(r).gw)
		}
	}
	return errors.Join(errs...)
}

// dropStaleAddresses removes the static addresses this run added to links
// the config no longer names (those of named links applyStatic handles).
func (c *Controller) dropStaleAddresses(configured map[string]bool, out io.Writer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for key := range c.static {
		name, cidr, _ := strings.Cut(key, " ")
		if configured[name] {
			continue
		}
		if link, err := netlink.LinkByName(name); err == nil {
			if addr, err := netlink.ParseAddr(cidr); err == nil {
				if err := netlink.AddrDel(link, addr); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
					errs = append(errs, fmt.Errorf("%s: remove address %s: %w", name, cidr, err))
					continue
				}
				fmt.Fprintf(out, "%s: address %s removed (interface no longer configured)\n", name, cidr)
			}
		}
		delete(c.static, key)
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
