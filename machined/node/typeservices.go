package node

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ballast-os/ballast/machined/etcd"
	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/machined/machines"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/server"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/machined/vip"
	"github.com/ballast-os/ballast/pkg/config"
)

// Service IDs of role services.
const (
	etcdService     = "etcd"
	nodeCertService = "node-cert"
	vipService      = "vip"
)

// startRoleServices adds the role's services. On metal it first waits for
// the machine to have an address (DHCP comes after the config is read from
// STATE or a nocloud volume): etcd, the VIP and the Kubernetes components
// are named and advertised by it, and 127.0.0.1 would be wrong for good.
func (n *Node) startRoleServices(cfg *config.Config) error {
	if n.opts.Mode != ModeMetal {
		return n.addRoleServices(cfg)
	}
	go func() {
		n.log.Info("waiting for an address before starting the role's services")
		for n.advertiseIP(cfg) == loopbackIP {
			time.Sleep(200 * time.Millisecond)
		}
		// Time before trust: certificates, etcd leases and the VIP's
		// fencing read the clock (bounded by machine.time.bootTimeout).
		n.log.Info("waiting for the clock before starting the role's services")
		wctx, cancel := context.WithTimeout(context.Background(), 11*time.Minute) // past the longest bootTimeout
		_ = n.timesync.WaitFirst(wctx)
		cancel()
		n.log.Info("starting the role's services", "address", n.advertiseIP(cfg))
		if err := n.addRoleServices(cfg); err != nil {
			n.log.Error("cannot start the role's services", "error", err)
		}
	}()
	return nil
}

// loopbackIP is advertiseIP's answer when the node has no address at all.
const loopbackIP = "127.0.0.1"

// addRoleServices registers the services of the node's role once it has a
// config: etcd on control planes, the certificate fetcher on workers.
func (n *Node) addRoleServices(cfg *config.Config) error {
	var specs []supervisor.Spec
	if cfg.IsControlPlane() {
		mgr := etcd.New(etcd.Options{
			Logger:      n.log.With("component", etcdService),
			Name:        n.nodeName(cfg),
			AdvertiseIP: n.advertiseIP(cfg),
			DataDir:     filepath.Join(n.store.EphemeralDir(), "lib", "etcd"),
			PKIDir:      filepath.Join(n.store.EphemeralDir(), "lib", "etcd-pki"),
			SnapshotDir: filepath.Join(n.store.EphemeralDir(), "lib", "etcd-snapshots"),
			Desired:     n.desired,
			Clock:       n.clock,
			Events:      n.events,
			BeforeLeave: func(ctx context.Context) {
				n.mu.Lock()
				ctl := n.vip
				n.mu.Unlock()
				ctl.Resign(ctx)
			},
		})
		ctl := vip.New(vip.Options{
			Logger:     n.log.With("component", vipService),
			Node:       n.nodeName(cfg),
			Client:     mgr.LocalClient,
			Healthy:    n.vipHealth(mgr.Healthy),
			Desired:    n.desired,
			Clock:      n.clock,
			Registerer: n.metrics,
			Events:     n.events,
		})
		n.mu.Lock()
		n.vip = ctl
		n.etcdMgr = mgr
		n.mu.Unlock()
		if spec, ok := n.addressSpec(mgr); ok {
			specs = append(specs, spec)
		}
		specs = append(specs, supervisor.Spec{
			ID:          vipService,
			Description: "control-plane virtual IP (machine.network.interfaces[].vip), elected through etcd",
			DependsOn:   []string{etcdService},
			Runner:      runner.Goroutine(vipService, ctl.Run),
			Restart:     supervisor.Always,
		}, supervisor.Spec{
			ID:          nodeCertService,
			Description: "machine-API certificate, minted with the OS CA and kept current with the config",
			Runner:      runner.Goroutine(nodeCertService, n.mintNodeCertificate),
			Restart:     supervisor.OnFailure,
		}, supervisor.Spec{
			ID:          etcdService,
			Description: "embedded etcd member " + n.advertiseIP(cfg) + ":2379",
			Runner:      runner.Goroutine(etcdService, mgr.Run),
			Restart:     supervisor.OnFailure,
			Health: &supervisor.HealthCheck{
				Check:    mgr.Healthy,
				Interval: 2 * time.Second,
				Timeout:  5 * time.Second,
				// No FailureThreshold: a member is unhealthy when the cluster
				// has no quorum, and restarting it cannot help.
			},
		})
	} else {
		specs = append(specs, supervisor.Spec{
			ID:          nodeCertService,
			Description: "machine-API certificate from a control-plane node, fetched again when the config changes it",
			Runner:      runner.Goroutine(nodeCertService, n.certFetcher().Run),
			Restart:     supervisor.OnFailure,
		})
	}
	if n.opts.Kubernetes {
		specs = append(specs, n.containerdSpecs(cfg)...)
		if cfg.IsControlPlane() {
			specs = append(specs, n.controlPlaneSpecs(cfg)...)
		}
		specs = append(specs, n.nodeSpecs(cfg)...)
	}
	for _, spec := range specs {
		if err := n.sup.Add(spec); err != nil {
			return fmt.Errorf("register service %s: %w", spec.ID, err)
		}
	}
	return nil
}

// vipHealth is the health a control plane must have to hold the VIP: its
// etcd member, and its kube-apiserver ready when the node runs Kubernetes
// (so that stopping the apiserver on the holder moves the VIP).
func (n *Node) vipHealth(etcdHealthy func(context.Context) error) func(context.Context) error {
	if !n.opts.Kubernetes {
		return etcdHealthy
	}
	apiserver := k8s.Cached(k8s.APIServerProbe(n.k8sPaths()).Check, 150*time.Millisecond)
	return func(ctx context.Context) error {
		if err := etcdHealthy(ctx); err != nil {
			return err
		}
		if err := apiserver(ctx); err != nil {
			return fmt.Errorf("kube-apiserver not ready: %w", err)
		}
		return nil
	}
}

// nodeName is the node's name — its etcd member, Kubernetes Node and
// machine record: the configured hostname, else the one DHCP gave, else
// "ballast-" and the first 12 hex digits of the node ID kept on STATE. It
// never derives from an address, so a new lease does not rename the node.
func (n *Node) nodeName(cfg *config.Config) string {
	if h := cfg.Machine.Network.Hostname; h != "" {
		return h
	}
	if h := n.network.DHCPHostname(); h != "" {
		return strings.ToLower(h)
	}
	n.nodeIDOnce.Do(func() {
		id, err := n.store.NodeID()
		if err != nil {
			// STATE is not writable: nothing else would work either; a
			// name that is at least stable for this run.
			n.log.Error("cannot keep a node ID on STATE", "error", err)
			id = "000000000000"
		}
		n.nodeID = id[:12]
	})
	return "ballast-" + n.nodeID
}

// advertiseIP is the address other nodes reach this node at: the API listen
// address when it is specific, else the first static address, else the first
// global unicast interface address.
func (n *Node) advertiseIP(cfg *config.Config) string {
	if ip := n.listenIP(); ip != "" {
		return ip
	}
	for _, iface := range cfg.Machine.Network.Interfaces {
		for _, a := range iface.Addresses {
			return strings.SplitN(a, "/", 2)[0]
		}
	}
	if ip := globalAddress(cfg); ip != "" {
		return ip
	}
	return loopbackIP
}

// listenIP is the machine API's listen address when it is a specific one
// ("" when it listens on every address).
func (n *Node) listenIP() string {
	if host, _, err := net.SplitHostPort(n.opts.Listener.Addr().String()); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			return ip.String()
		}
	}
	return ""
}

// globalAddress is the machine's first global unicast IPv4 address, else
// its first global IPv6 one ("" for none): a router's SLAAC address may come
// before the DHCP lease. It is never an address the node only carries for
// the cluster: a VIP of the config (the holder has it too), one on a bridge
// (the pod network's cni0), or one inside the pod or Service subnets.
func globalAddress(cfg *config.Config) string {
	links, err := netlink.LinkList()
	if err != nil {
		return ""
	}
	var reserved machines.Reserved // none without a config (maintenance)
	if cfg != nil {
		reserved = machines.ClusterReserved(cfg)
	}
	v6 := ""
	for _, l := range links {
		if l.Type() == "bridge" {
			continue
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if !a.IP.IsGlobalUnicast() || reserved.IP(a.IP) {
				continue
			}
			if a.IP.To4() != nil {
				return a.IP.String()
			}
			if v6 == "" {
				v6 = a.IP.String()
			}
		}
	}
	return v6
}

// Etcd implements server.Machine.
func (n *Node) Etcd() (server.Etcd, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.etcdMgr == nil {
		return nil, etcd.ErrNotControlPlane
	}
	return n.etcdMgr, nil
}

// ScratchDir implements server.Machine.
func (n *Node) ScratchDir() string { return n.store.EphemeralDir() }
