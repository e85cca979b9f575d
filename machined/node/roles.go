package node

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/etcd"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/server"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/pki"
)

// Service IDs of role services.
const (
	etcdService     = "etcd"
	nodeCertService = "node-cert"
)

// addRoleServices registers the services of the node's role once it has a
// config: etcd on control planes, the certificate fetcher on workers.
func (n *Node) addRoleServices(cfg *config.Config) error {
	var spec supervisor.Spec
	if cfg.IsControlPlane() {
		mgr := etcd.New(etcd.Options{
			Logger:      n.log.With("component", etcdService),
			Name:        memberName(cfg, n.advertiseIP(cfg)),
			AdvertiseIP: n.advertiseIP(cfg),
			DataDir:     filepath.Join(n.store.EphemeralDir(), "lib", "etcd"),
			PKIDir:      filepath.Join(n.store.EphemeralDir(), "lib", "etcd-pki"),
			SnapshotDir: filepath.Join(n.store.EphemeralDir(), "lib", "etcd-snapshots"),
			Config:      func() *config.Config { c, _ := n.Config(); return c },
		})
		n.mu.Lock()
		n.etcdMgr = mgr
		n.mu.Unlock()
		spec = supervisor.Spec{
			ID:          etcdService,
			Description: "embedded etcd member " + n.advertiseIP(cfg) + ":2379",
			Runner:      runner.Goroutine(etcdService, mgr.Run),
			Restart:     supervisor.OnFailure,
			Health: &supervisor.HealthCheck{
				Check:    mgr.Healthy,
				Interval: 2 * time.Second,
				Timeout:  5 * time.Second,
			},
		}
	} else {
		spec = supervisor.Spec{
			ID:          nodeCertService,
			Description: "machine-API certificate from a control-plane node",
			Runner:      runner.Goroutine(nodeCertService, n.fetchNodeCertificate),
			Restart:     supervisor.OnFailure,
		}
	}
	if err := n.sup.Add(spec); err != nil {
		return fmt.Errorf("register service %s: %w", spec.ID, err)
	}
	return nil
}

// memberName is the node's stable etcd member name: its hostname, or one
// derived from its address when the config names no hostname.
func memberName(cfg *config.Config, ip string) string {
	if h := cfg.Machine.Network.Hostname; h != "" {
		return h
	}
	return "ballast-" + strings.NewReplacer(".", "-", ":", "-").Replace(ip)
}

// advertiseIP is the address other nodes reach this node at: the API listen
// address when it is specific, else the first static address, else the first
// global unicast interface address.
func (n *Node) advertiseIP(cfg *config.Config) string {
	if host, _, err := net.SplitHostPort(n.opts.Listener.Addr().String()); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			return ip.String()
		}
	}
	for _, iface := range cfg.Machine.Network.Interfaces {
		for _, a := range iface.Addresses {
			return strings.SplitN(a, "/", 2)[0]
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsGlobalUnicast() {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
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

// SignNodeCertificate implements server.Machine: a control-plane node signs
// a worker's machine-API certificate when it presents the machine token.
// The certificate carries no role.
func (n *Node) SignNodeCertificate(csrPEM []byte, token string) ([]byte, error) {
	cfg, _ := n.Config()
	if cfg == nil || !cfg.IsControlPlane() || cfg.Machine.CA == nil || cfg.Machine.CA.Key == "" {
		return nil, fmt.Errorf("%w: only configured control-plane nodes sign certificates", errdefs.ErrFailedPrecondition)
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(cfg.Machine.Token)) != 1 {
		n.log.Warn("certificate request with a wrong machine token refused")
		return nil, fmt.Errorf("%w: wrong machine token", errdefs.ErrPermissionDenied)
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: no PEM certificate request", errdefs.ErrInvalidArgument)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		return nil, fmt.Errorf("%w: invalid certificate request", errdefs.ErrInvalidArgument)
	}
	ca, err := pki.FromB64(cfg.Machine.CA.Crt, cfg.Machine.CA.Key)
	if err != nil {
		return nil, fmt.Errorf("machine.ca: %w", err)
	}
	ck, err := pki.Issue(ca, pki.Request{
		CommonName: csr.Subject.CommonName, DNSNames: csr.DNSNames, IPs: csr.IPAddresses,
		Usage: pki.UsageServer | pki.UsageClient, PublicKey: csr.PublicKey,
	})
	if err != nil {
		return nil, err
	}
	n.log.Info("signed a node certificate", "node", csr.Subject.CommonName, "ips", fmt.Sprint(csr.IPAddresses))
	return ck.Crt, nil
}

// fetchNodeCertificate is the worker's node-cert service: it asks the
// control-plane nodes for a machine-API certificate (verifying them with the
// OS CA it already holds), then serves it.
func (n *Node) fetchNodeCertificate(ctx context.Context, out io.Writer) error {
	cfg, _ := n.Config()
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
	dns, ips := n.localNames(cfg)
	csrDER, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: hostname(cfg)}, DNSNames: dns, IPAddresses: ips,
	}, key)
	if err != nil {
		return fmt.Errorf("create CSR: %w", err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})
	delay := time.Second
	for {
		for _, addr := range controlPlaneHosts(cfg) {
			crt, err := requestCert(ctx, addr, caPEM, csrPEM, cfg.Machine.Token)
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
			n.log.Info("worker machine-API certificate obtained", "from", addr)
			<-ctx.Done()
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
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

func requestCert(ctx context.Context, addr string, caPEM, csrPEM []byte, token string) ([]byte, error) {
	c, err := client.New(client.Options{Address: addr, CA: caPEM, ServerOnly: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := machine.NewCertificateServiceClient(c.Conn()).SignNodeCertificate(cctx, &machine.SignNodeCertificateRequest{Csr: csrPEM, Token: token})
	if err != nil {
		return nil, err
	}
	if len(resp.GetCrt()) == 0 {
		return nil, errors.New("empty certificate")
	}
	return resp.GetCrt(), nil
}
