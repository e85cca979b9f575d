package node

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/certsigner"
	"github.com/ballast-os/ballast/machined/machines"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/pki"
)

// This file is the node certificate's home: the control-plane side that
// signs a worker's machine-API certificate, and the worker's node-cert
// service that asks for it.
//
// A certificate names only what its issuer verified: the signer ignores the
// names and addresses a CSR asks for. It certifies the address it saw the
// call come from and the requested hostname once that is checked (a DNS
// label, and not a name or address of a control plane), marks the result
// os:node:worker, and gives it server usage only. See docs/security.md.

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
		fmt.Fprintf(out, "machine-API certificate for %v %v\n", dns, ips)
	})
	return nil
}

// workerCertInputs is what a worker's certificate depends on in the config:
// a change fetches a new one.
func (n *Node) workerCertInputs(cfg *config.Config) string {
	return fmt.Sprint(n.hostname(cfg), cfg.Machine.CA.Crt, cfg.Machine.Token, controlPlaneHosts(cfg))
}

// fetchNodeCertificate is the worker's node-cert service: it asks the
// control-plane nodes for a machine-API certificate (verifying that they are
// control planes of the OS CA it already holds) and serves it, and asks
// again when the hostname, the CA or the control planes change.
func (n *Node) fetchNodeCertificate(ctx context.Context, out io.Writer) error {
	for {
		cfg, changed := n.Config()
		inputs := n.workerCertInputs(cfg)
		if err := n.fetchOnce(ctx, cfg, out); err != nil || ctx.Err() != nil {
			return err
		}
		for n.workerCertInputs(cfg) == inputs {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			}
			cfg, changed = n.Config()
		}
		n.log.Info("the config changed what the worker certificate names; fetching a new one")
	}
}

// fetchOnce obtains one certificate for cfg and serves it.
func (n *Node) fetchOnce(ctx context.Context, cfg *config.Config, out io.Writer) error {
	caPEM, err := pki.DecodeB64(cfg.Machine.CA.Crt)
	if err != nil {
		return fmt.Errorf("machine.ca.crt: %w", err)
	}
	pool, err := pki.Pool(caPEM)
	if err != nil {
		return err
	}
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		return err
	}
	// The signer certifies the address it sees the call come from: call
	// from the address this node is reached at.
	source := net.ParseIP(n.advertiseIP(cfg))
	csrDER, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: n.hostname(cfg)},
	}, key)
	if err != nil {
		return fmt.Errorf("create CSR: %w", err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})
	delay := time.Second
	for {
		for _, addr := range controlPlaneHosts(cfg) {
			crt, err := callCertService(ctx, addr, source, caPEM, func(ctx context.Context, c machine.CertificateServiceClient) (*machine.SignNodeCertificateResponse, error) {
				return c.SignNodeCertificate(ctx, &machine.SignNodeCertificateRequest{Csr: csrPEM, Token: cfg.Machine.Token})
			})
			if err != nil {
				fmt.Fprintf(out, "certificate request to %s failed: %v\n", addr, err)
				continue
			}
			cert, err := (&pki.CertAndKey{Crt: crt, Key: keyPEM}).TLSCertificate()
			if err != nil {
				return err
			}
			n.mu.Lock()
			n.nodeCert = &cert
			n.mu.Unlock()
			n.creds.SetConfigured(cert, pool)
			fmt.Fprintf(out, "machine-API certificate issued by %s\n", addr)
			n.log.Info("worker machine-API certificate obtained", "from", addr, "names", fmt.Sprint(cert.Leaf.DNSNames, cert.Leaf.IPAddresses))
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-n.clock.After(delay):
		}
		delay = min(delay*2, 15*time.Second)
	}
}

// controlPlaneHosts are the control-plane hosts a worker knows of; the port
// of a peer entry is etcd's, so only the host is kept.
func controlPlaneHosts(cfg *config.Config) []string {
	var out []string
	for _, a := range cfg.ControlPlaneAddrs() {
		if h, _, err := net.SplitHostPort(a); err == nil {
			a = h
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
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
