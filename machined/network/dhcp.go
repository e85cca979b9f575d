package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"

	"github.com/ballast-os/ballast/pkg/config"
)

// DHCP client timing.
const (
	// dhcpRetryMax caps the wait between discovery attempts.
	dhcpRetryMax = 30 * time.Second
	// renewRetryMax caps the wait between renewal attempts.
	renewRetryMax = 60 * time.Second
	// minRetry keeps a misbehaving server from making the client spin.
	minRetry = time.Second
)

// leaseState is what the controller knows of one interface's lease.
type leaseState struct {
	address  *net.IPNet
	server   net.IP
	router   net.IP
	dns      []string
	ntp      []string
	hostname string
	obtained time.Time
	renewAt  time.Time
	rebindAt time.Time
	expires  time.Time
	state    string // discovering, bound, renewing, rebinding
}

// startDHCP starts the interface's DHCP client unless it runs.
func (c *Controller) startDHCP(ctx context.Context, name string, out io.Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.dhcpStop[name]; ok {
		return
	}
	dctx, cancel := context.WithCancel(ctx)
	c.dhcpStop[name] = cancel
	c.leases[name] = &leaseState{state: "discovering"}
	go c.runDHCP(dctx, name, out)
}

func (c *Controller) stopAllDHCP() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, stop := range c.dhcpStop {
		stop()
		delete(c.dhcpStop, name)
	}
}

// runDHCP keeps a lease on the interface: DORA, then renewal at T1
// (unicast to the server), rebinding at T2 (any server), and discovery
// again when the lease expired. The address carries the lease's lifetime,
// so the kernel drops it if machined is not there to.
func (c *Controller) runDHCP(ctx context.Context, name string, out io.Writer) {
	defer func() {
		c.mu.Lock()
		delete(c.leases, name)
		c.mu.Unlock()
	}()
	backoff := minRetry
	for ctx.Err() == nil {
		lease, err := c.discover(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			fmt.Fprintf(out, "%s: DHCP: no lease (%v); trying again in %s\n", name, err, backoff)
			c.sleep(ctx, backoff)
			backoff = min(backoff*2, dhcpRetryMax)
			continue
		}
		backoff = minRetry
		if err := c.ops.bind(name, lease, "bound", out); err != nil {
			fmt.Fprintf(out, "%s: DHCP: %v\n", name, err)
			c.sleep(ctx, minRetry)
			continue
		}
		c.keep(ctx, name, lease, out)
	}
}

func (c *Controller) client(name string) (*nclient4.Client, error) {
	return nclient4.New(name, nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(2))
}

func (c *Controller) discover(ctx context.Context, name string) (*nclient4.Lease, error) {
	c.setState(name, "discovering")
	cl, err := c.client(name)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return cl.Request(ctx, dhcpv4.WithRequestedOptions(dhcpv4.OptionHostName, dhcpv4.OptionDomainNameServer, dhcpv4.OptionRouter, dhcpv4.OptionNTPServers))
}

// keep renews the lease until it is lost; it returns when the lease expired
// (the address removed) or ctx ended.
func (c *Controller) keep(ctx context.Context, name string, lease *nclient4.Lease, out io.Writer) {
	for {
		st := c.snapshot(name)
		if !c.sleepUntil(ctx, st.renewAt) {
			return
		}
		for {
			now := c.opts.Clock.Now()
			if !now.Before(st.expires) {
				c.ops.unbind(name, out)
				fmt.Fprintf(out, "%s: DHCP: lease on %s expired; discovering again\n", name, st.address)
				return
			}
			state := "renewing"
			if !now.Before(st.rebindAt) {
				state = "rebinding"
			}
			c.setState(name, state)
			next, err := c.ops.renew(ctx, name, lease)
			if err == nil {
				lease = next
				if err := c.ops.bind(name, lease, "bound", out); err != nil {
					fmt.Fprintf(out, "%s: DHCP: %v\n", name, err)
				}
				break
			}
			if ctx.Err() != nil {
				return
			}
			// RFC 2131 4.4.5: retry at half the time left to the next
			// deadline, at least a second apart.
			deadline := st.rebindAt
			if state == "rebinding" {
				deadline = st.expires
			}
			wait := max(min(deadline.Sub(now)/2, renewRetryMax), minRetry)
			fmt.Fprintf(out, "%s: DHCP: %s %s failed (%v); lease expires %s; trying again in %s\n",
				name, state, st.address, err, st.expires.Format(time.RFC3339), wait.Round(time.Second))
			if !c.sleepUntil(ctx, now.Add(wait)) {
				return
			}
		}
	}
}

func (c *Controller) renew(ctx context.Context, name string, lease *nclient4.Lease) (*nclient4.Lease, error) {
	cl, err := c.client(name)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return cl.Renew(ctx, lease)
}

// bind applies a lease: the address with the lease's lifetime, the default
// route via the router, and the resolvers.
func (c *Controller) bind(name string, lease *nclient4.Lease, state string, out io.Writer) error {
	ack := lease.ACK
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrNoLink, name)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	lt := ack.IPAddressLeaseTime(time.Hour)
	ipn := &net.IPNet{IP: ack.YourIPAddr.To4(), Mask: mask}
	addr := &netlink.Addr{IPNet: ipn, ValidLft: int(lt.Seconds()), PreferedLft: int(lt.Seconds())}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("address %s: %w", ipn, err)
	}
	var router net.IP
	if rs := ack.Router(); len(rs) > 0 {
		router = rs[0]
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: router, Protocol: protoDHCP}); err != nil {
			return fmt.Errorf("default route via %s: %w", router, err)
		}
	}
	var dns, ntpServers []string
	for _, d := range ack.DNS() {
		dns = append(dns, d.String())
	}
	for _, s := range dhcpv4.GetIPs(dhcpv4.OptionNTPServers, ack.Options) {
		ntpServers = append(ntpServers, s.String())
	}
	now := c.opts.Clock.Now()
	t1 := ack.IPAddressRenewalTime(lt / 2)
	t2 := ack.IPAddressRebindingTime(lt * 7 / 8)
	c.mu.Lock()
	prev := c.leases[name]
	c.leases[name] = &leaseState{
		address: ipn, server: ack.ServerIdentifier(), router: router, dns: dns, ntp: ntpServers, hostname: ack.HostName(),
		obtained: now, renewAt: now.Add(t1), rebindAt: now.Add(t2), expires: now.Add(lt), state: state,
	}
	c.mu.Unlock()
	verb := "renewed"
	if prev == nil || prev.address == nil || prev.address.String() != ipn.String() {
		verb = "leased"
	}
	fmt.Fprintf(out, "%s: DHCP: %s %s from %s for %s (renew in %s, router %v, dns %v)\n",
		name, verb, ipn, ack.ServerIdentifier(), lt, t1, router, dns)
	n, _ := c.effective(c.currentConfig())
	return errors.Join(c.writeResolvers(n, out), c.setHostname(n, out))
}

func (c *Controller) currentConfig() *config.Config {
	cfg, _ := c.opts.Config()
	return cfg
}

// unbind removes an expired lease's address.
func (c *Controller) unbind(name string, out io.Writer) {
	st := c.snapshot(name)
	if link, err := netlink.LinkByName(name); err == nil && st.address != nil {
		_ = netlink.AddrDel(link, &netlink.Addr{IPNet: st.address})
	}
	c.mu.Lock()
	c.leases[name] = &leaseState{state: "discovering"}
	c.mu.Unlock()
	n, _ := c.effective(c.currentConfig())
	_ = c.writeResolvers(n, out)
}

func (c *Controller) snapshot(name string) leaseState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.leases[name]; l != nil {
		return *l
	}
	return leaseState{}
}

func (c *Controller) setState(name, state string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.leases[name]; l != nil {
		l.state = state
	}
}

func (c *Controller) sleep(ctx context.Context, d time.Duration) {
	c.sleepUntil(ctx, c.opts.Clock.Now().Add(d))
}

// sleepUntil waits until t on the controller's clock; false when ctx ended
// first.
func (c *Controller) sleepUntil(ctx context.Context, t time.Time) bool {
	timer := c.opts.Clock.NewTimer(t.Sub(c.opts.Clock.Now()))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C():
		return true
	}
}
