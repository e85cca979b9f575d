package etcd

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
)

// identity is what the member is named and reached at. Both follow the
// node: a DHCP lease or a static address that changes while etcd runs
// changes the advertise address, and with no hostname configured the name
// derived from it.
type identity struct{ name, ip string }

func (m *Manager) identity() identity {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id
}

func (m *Manager) name() string        { return m.identity().name }
func (m *Manager) advertiseIP() string { return m.identity().ip }

// SetAddress tells the manager the node's advertise address (and the member
// name that goes with it). A running member is stopped and started again
// with it: its peer URL is updated through the other members first, its
// certificates are issued for the new address, and it keeps its data and
// its membership. A member that is not running yet uses it when it starts.
func (m *Manager) SetAddress(name, ip string) {
	m.mu.Lock()
	changed := m.id != identity{name: name, ip: ip}
	old := m.id
	m.id = identity{name: name, ip: ip}
	m.mu.Unlock()
	if !changed {
		return
	}
	m.log.Info("the node's address changed; etcd follows it", "old", old.ip, "new", ip, "name", name)
	select {
	case m.readdress <- struct{}{}:
	default: // one pending notice is enough: the latest identity is read
	}
}

// ensureCerts issues the member's certificates when they were not issued
// for its current identity (at start, and after an address change).
func (m *Manager) ensureCerts() error {
	id := m.identity()
	if m.certsFor == id {
		return nil
	}
	if err := m.mintCerts(m.config(), id); err != nil {
		return err
	}
	m.certsFor = id
	return nil
}

// addressChanged reports whether the identity differs from the one the
// member runs with, after a notice on readdress.
func (m *Manager) addressChanged() bool { return m.identity() != m.certsFor }

// Address is the member's current name and advertise address.
func (m *Manager) Address() (name, ip string) {
	id := m.identity()
	return id.name, id.ip
}

// AddressPoll is how often an AddressFollower reads the node's address; a
// new one must be seen twice in a row (a lease being replaced passes
// through no address).
const AddressPoll = time.Second

// AddressFollower feeds a changed advertise address (a new DHCP lease, a
// static address applied live) to a Manager's address-change logic
// (SetAddress): the member starts again at the new address, its peer URL
// updated through the other members, its data and membership kept.
type AddressFollower struct {
	Manager *Manager
	// Node returns the node's name and advertise address now (ok false:
	// not configured).
	Node  func() (name, ip string, ok bool)
	Clock clock.Clock
}

// Run polls the node's address every AddressPoll and hands a stable new one
// to the manager, until ctx ends.
func (f *AddressFollower) Run(ctx context.Context, out io.Writer) error {
	pending := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.Clock.After(AddressPoll):
		}
		name, ip, ok := f.Node()
		if !ok {
			continue
		}
		_, current := f.Manager.Address()
		if ip == current || ip == "127.0.0.1" || ip == "" {
			pending = ""
			continue
		}
		if ip != pending {
			pending = ip
			continue
		}
		fmt.Fprintf(out, "advertise address changed from %s to %s: restarting the etcd member at it\n", current, ip)
		f.Manager.SetAddress(name, ip)
		pending = ""
	}
}
