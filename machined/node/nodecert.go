package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/ballast-os/ballast/machined/certsigner"
	"github.com/ballast-os/ballast/machined/events"
	"github.com/ballast-os/ballast/machined/machines"
	"github.com/ballast-os/ballast/machined/nodecert"
	"github.com/ballast-os/ballast/pkg/config"
)

// This file wires the node certificate: a control plane mints its own
// machine-API certificate (mintNodeCertificate) and signs workers'
// (certsigner); a worker fetches its own (nodecert.Fetcher). See
// docs/security.md.

// reservedIdentities lists the control planes' names and addresses: this
// node's own, the config's endpoint, peers and certSANs, and every etcd
// member's name and URLs when etcd answers.
func (n *Node) reservedIdentities(ctx context.Context, cfg *config.Config) machines.Reserved {
	r := machines.ClusterReserved(cfg)
	r.AddURL(cfg.Cluster.ControlPlane.Endpoint)
	r.AddHost(n.hostname(cfg))
	r.AddHost(n.advertiseIP(cfg))
	for _, h := range cfg.ControlPlaneAddrs() {
		r.AddHost(h)
	}
	for _, s := range cfg.Machine.CertSANs {
		r.AddHost(s)
	}
	for _, s := range cfg.Cluster.APIServer.CertSANs {
		r.AddHost(s)
	}
	_, ips := n.localNames(cfg)
	for _, ip := range ips {
		r.AddHost(ip.String())
	}
	n.mu.Lock()
	mgr := n.etcdMgr
	n.mu.Unlock()
	if mgr != nil {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if list, err := mgr.Members(cctx); err == nil {
			for _, m := range list.Members {
				r.AddHost(m.Name)
				for _, u := range append(append([]string{}, m.PeerURLs...), m.ClientURLs...) {
					r.AddURL(u)
				}
			}
		}
	}
	return r
}

// mintNodeCertificate is a control plane's node-cert service: it issues the
// machine-API certificate with the OS CA key and issues it again whenever
// the names it must carry change (machine.certSANs, the hostname, the
// static addresses), which makes those fields live.
func (n *Node) mintNodeCertificate(ctx context.Context, out io.Writer) error {
	n.desired.Watch(ctx, func(_ context.Context, cfg *config.Config) {
		dns, ips := n.localNames(cfg)
		n.mu.Lock()
		current := n.issuedFor
		n.mu.Unlock()
		if n.identityKey(cfg, dns, ips) == current {
			return // the certificate in use (e.g. issued at boot) already fits
		}
		cert, pool, err := n.serverIdentity(cfg)
		if err != nil {
			n.log.Error("cannot issue the machine-API certificate; keeping the current one", "error", err)
			fmt.Fprintf(out, "cannot issue the machine-API certificate: %v\n", err)
			return
		}
		n.creds.SetConfigured(cert, pool)
		n.log.Info("machine-API certificate issued for changed names", "dns", dns, "ips", fmt.Sprint(ips))
		n.events.Publish(events.Certificate, "node-cert", "machine-API certificate issued for changed names",
			"name", "machine-api", "dns", strings.Join(dns, ","), "ips", fmt.Sprint(ips))
		fmt.Fprintf(out, "machine-API certificate for %v %v\n", dns, ips)
	})
	return nil
}

// certFetcher is the worker's node-cert controller with the node's inputs.
func (n *Node) certFetcher() *nodecert.Fetcher {
	return &nodecert.Fetcher{
		Config:   n.Config,
		Hostname: n.hostname,
		Source:   func(cfg *config.Config) net.IP { return net.ParseIP(n.advertiseIP(cfg)) },
		Serve: func(cert tls.Certificate, pool *x509.CertPool) {
			n.mu.Lock()
			n.nodeCert = &cert
			n.mu.Unlock()
			n.creds.SetConfigured(cert, pool)
			expires := ""
			if cert.Leaf != nil {
				expires = cert.Leaf.NotAfter.UTC().Format(time.RFC3339)
			}
			n.events.Publish(events.Certificate, "node-cert", "machine-API certificate from a control plane in use",
				"name", "machine-api", "expires", expires)
		},
		Current: n.workerProof,
		Clock:   n.clock,
		Log:     n.log,
	}
}

// workerProof is what a worker presents to a control plane's
// CertificateService as who it is (certsigner: a worker keeps its name
// when its address changes): its kubelet's client certificate, kept on
// disk across reboots, else the machine-API certificate it fetched (nil:
// neither yet).
func (n *Node) workerProof() *tls.Certificate {
	if pair, err := os.ReadFile(n.kubeletPaths().ClientCert()); err == nil {
		if c, err := tls.X509KeyPair(pair, pair); err == nil {
			return &c
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.nodeCert
}

// signer signs workers' certificates on this control plane.
func (n *Node) signer() *certsigner.Signer {
	return &certsigner.Signer{
		Config:     n.desired.Current,
		Reserved:   n.reservedIdentities,
		Registry:   registry{n},
		Kubernetes: n.opts.Kubernetes,
		Clock:      n.clock,
		Log:        n.log,
	}
}

// SignNodeCertificate implements server.Machine (certsigner.Signer.SignNode).
func (n *Node) SignNodeCertificate(ctx context.Context, csrPEM []byte, token string, peerIP net.IP) ([]byte, error) {
	return n.signer().SignNode(ctx, csrPEM, token, peerIP)
}

// SignKubeletCertificate implements server.Machine
// (certsigner.Signer.SignKubelet).
func (n *Node) SignKubeletCertificate(ctx context.Context, csrPEM []byte, token string, peerIP net.IP) ([]byte, error) {
	return n.signer().SignKubelet(ctx, csrPEM, token, peerIP)
}
