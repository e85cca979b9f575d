package node

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/ballast-os/ballast/machined/server"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/pki"
)

// enterMaintenance serves a fresh self-signed certificate and tells the
// operator how to pin it.
func (n *Node) enterMaintenance() error {
	dns, ips := n.localNames(nil)
	ck, err := pki.SelfSigned("ballast-maintenance", dns, ips)
	if err != nil {
		return fmt.Errorf("maintenance certificate: %w", err)
	}
	cert, err := ck.TLSCertificate()
	if err != nil {
		return err
	}
	n.creds = server.NewMaintenanceCredentials(cert)
	fp := pki.Fingerprint(cert.Leaf)
	addr := n.opts.Listener.Addr().String()
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if len(ips) > 0 {
			host = ips[len(ips)-1].String()
		}
	}
	n.maintenanceFP = fp
	n.log.Info("maintenance mode: waiting for a machine config", "address", addr, "fingerprint", fp)
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		n.printApplyLine(host) // on metal, printed once DHCP gave an address
	}
	return nil
}

// printApplyLine logs the ready apply-config command for the node at host.
func (n *Node) printApplyLine(host string) {
	n.log.Info("apply a config with: nodectl apply-config --insecure -n " + host + " --cert-fingerprint " + n.maintenanceFP + " --file controlplane.yaml")
}

// serverIdentity returns the configured API certificate and client CA pool.
// Control-plane nodes mint their own certificate with the OS CA key.
func (n *Node) serverIdentity(cfg *config.Config) (tls.Certificate, *x509.CertPool, error) {
	ca, err := pki.FromB64(cfg.Machine.CA.Crt, cfg.Machine.CA.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("machine.ca: %w", err)
	}
	pool, err := pki.Pool(ca.Crt)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("machine.ca.crt: %w", err)
	}
	if len(ca.Key) == 0 {
		n.mu.Lock()
		nodeCert := n.nodeCert
		n.mu.Unlock()
		if nodeCert != nil {
			return *nodeCert, pool, nil
		}
		// Workers hold no CA key; a control-plane node issues their
		// certificate (the join flow). Until then the node requires client
		// certificates but serves a self-signed one, which clients reject:
		// nothing is ever served without mTLS once configured.
		n.log.Warn("worker has no machine-API certificate from a control-plane node yet; serving a placeholder that clients will not trust")
		dns, ips := n.localNames(cfg)
		ck, err := pki.SelfSigned(n.hostname(cfg), dns, ips)
		if err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("placeholder certificate: %w", err)
		}
		cert, err := ck.TLSCertificate()
		return cert, pool, err
	}
	dns, ips := n.localNames(cfg)
	key := n.identityKey(cfg, dns, ips)
	// A control plane certifies itself with the CA key it holds: it is the
	// only kind of node that can mark a certificate os:node:controlplane.
	ck, err := pki.Issue(ca, pki.Request{
		CommonName:   n.hostname(cfg),
		Organization: []string{pki.NodeControlPlane},
		DNSNames:     dns,
		IPs:          ips,
		Usage:        pki.UsageServer,
	})
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("machine API certificate: %w", err)
	}
	cert, err := ck.TLSCertificate()
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	n.mu.Lock()
	n.issuedFor = key
	n.mu.Unlock()
	return cert, pool, nil
}

// identityKey is what a control plane's API certificate depends on: the
// certificate is issued again only when it changes.
func (n *Node) identityKey(cfg *config.Config, dns []string, ips []net.IP) string {
	return fmt.Sprint(n.hostname(cfg), dns, ips, cfg.Machine.CA.Crt)
}

// localNames lists the names and addresses the API certificate must cover:
// hostname, the listen address, every local interface address, and the
// config's certSANs and static addresses.
func (n *Node) localNames(cfg *config.Config) ([]string, []net.IP) {
	dns := []string{"localhost"}
	var ips []net.IP
	addIP := func(ip net.IP) {
		if ip == nil || ip.IsUnspecified() {
			return
		}
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}
	addName := func(s string) {
		if s == "" {
			return
		}
		if ip := net.ParseIP(s); ip != nil {
			addIP(ip)
		} else if !slices.Contains(dns, s) {
			dns = append(dns, s)
		}
	}
	addName(n.hostname(cfg))
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				addIP(ipn.IP)
			}
		}
	}
	if host, _, err := net.SplitHostPort(n.opts.Listener.Addr().String()); err == nil {
		addIP(net.ParseIP(host))
	}
	if cfg != nil {
		for _, s := range cfg.Machine.CertSANs {
			addName(s)
		}
		for _, iface := range cfg.Machine.Network.Interfaces {
			for _, a := range iface.Addresses {
				addName(strings.SplitN(a, "/", 2)[0])
			}
			// A control plane may hold the VIP: clients reach it there.
			if iface.VIP != nil && cfg.IsControlPlane() {
				addName(iface.VIP.IP)
			}
		}
	}
	return dns, ips
}
