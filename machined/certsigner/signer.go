// Package certsigner is a control plane's signer of workers' certificates:
// the machine-API certificate (with the OS CA) and the kubelet's client
// certificate (with the cluster CA), each for a worker that presents the
// machine token. There is no Kubernetes bootstrap token.
//
// A certificate names only what its issuer verified: the signer ignores the
// names and addresses a CSR asks for. It certifies the address it saw the
// call come from and the requested hostname once that is checked (a DNS
// label, and not a name or address of a control plane or of the cluster),
// and records the machine with that address in the machine registry before
// a kubelet certificate is issued, so the kubelet-serving approver knows
// it. See docs/security.md.
package certsigner

import (
	"context"
	"crypto"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/machines"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/pki"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Registry is where the signer records workers (machines.Put) and looks
// up who holds a name (machines.Get).
type Registry interface {
	Put(ctx context.Context, r machines.Record) error
	Get(ctx context.Context, name string) (machines.Record, bool, error)
}

// Signer signs workers' certificates on a control plane.
type Signer struct {
	// Config is the control plane's machine config now (nil: none).
	Config func() *config.Config
	// Reserved are the names and addresses no worker certificate may
	// carry: the control planes' and the cluster's.
	Reserved func(ctx context.Context, cfg *config.Config) machines.Reserved
	Registry Registry
	// Kubernetes is whether this control plane runs Kubernetes (holds the
	// cluster CA's key for kubelet certificates).
	Kubernetes bool
	Clock      clock.Clock
	Log        *slog.Logger
}

// ErrRefused is wrapped by every refusal of a worker's certificate request.
var ErrRefused = errors.New("node certificate refused")

// hostnameRE is an RFC 1123 host name: dot-separated labels of letters,
// digits and inner hyphens.
var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// Request is a checked request: what the certificate will name.
type Request struct {
	Hostname string
	IP       net.IP
}

// Check decides what a worker's certificate may name. csr is the
// worker's request, peerIP the address the call came from as the server saw
// it, reserved the control planes' names and addresses.
func Check(csr *x509.CertificateRequest, peerIP net.IP, reserved machines.Reserved) (Request, error) {
	if peerIP == nil || peerIP.IsUnspecified() || peerIP.IsMulticast() {
		return Request{}, fmt.Errorf("%w: %w: the caller's address %v cannot be certified", errdefs.ErrPermissionDenied, ErrRefused, peerIP)
	}
	if ip4 := peerIP.To4(); ip4 != nil {
		peerIP = ip4
	}
	if reserved.IP(peerIP) {
		return Request{}, fmt.Errorf("%w: %w: the request comes from %s, a control-plane or cluster-reserved address", errdefs.ErrPermissionDenied, ErrRefused, peerIP)
	}
	host := strings.ToLower(strings.TrimSuffix(csr.Subject.CommonName, "."))
	switch {
	case host == "":
		return Request{}, fmt.Errorf("%w: %w: the request names no hostname (subject common name)", errdefs.ErrInvalidArgument, ErrRefused)
	case len(host) > 253 || !hostnameRE.MatchString(host) || net.ParseIP(host) != nil:
		return Request{}, fmt.Errorf("%w: %w: %q is not a valid hostname", errdefs.ErrInvalidArgument, ErrRefused, host)
	case reserved.Name(host):
		return Request{}, fmt.Errorf("%w: %w: %q is a control-plane or cluster-reserved name", errdefs.ErrPermissionDenied, ErrRefused, host)
	}
	return Request{Hostname: host, IP: peerIP}, nil
}

// KubeletClientRequest is what a kubelet client certificate for node name
// names: system:node:<name> in system:nodes, client use only.
func KubeletClientRequest(name string, pub crypto.PublicKey, lifetime time.Duration) pki.Request {
	return pki.Request{
		CommonName: "system:node:" + name, Organization: []string{"system:nodes"},
		Usage: pki.UsageClient, PublicKey: pub, Validity: lifetime,
	}
}

// CertificateLifetime is cluster.certificateLifetime, else the default.
func CertificateLifetime(cfg *config.Config) time.Duration {
	if l := cfg.Cluster.CertificateLifetime.Std(); l > 0 {
		return l
	}
	return config.DefaultCertificateLifetime.Std()
}

// SignNode signs a worker's machine-API certificate when it presents the
// machine token.
// peerIP is the caller's address as the server saw it.
func (s *Signer) SignNode(ctx context.Context, csrPEM []byte, token string, peerIP net.IP) ([]byte, error) {
	cfg, csr, req, err := s.check(ctx, "node certificate", csrPEM, token, peerIP)
	if err != nil {
		return nil, err
	}
	if err := s.record(ctx, req); err != nil {
		// The name was checked against the registry; recording it can
		// wait for the kubelet's certificate, which records it again.
		s.Log.Warn("cannot record the worker in the machine registry", "node", req.Hostname, "error", err)
	}
	ca, err := pki.FromB64(cfg.Machine.CA.Crt, cfg.Machine.CA.Key)
	if err != nil {
		return nil, fmt.Errorf("machine.ca: %w", err)
	}
	ck, err := pki.Issue(ca, pki.Request{
		CommonName: req.Hostname, Organization: []string{pki.NodeWorker},
		DNSNames: []string{req.Hostname}, IPs: []net.IP{req.IP},
		Usage: pki.UsageServer, PublicKey: csr.PublicKey,
	})
	if err != nil {
		return nil, err
	}
	var ignored []string
	for _, ip := range csr.IPAddresses {
		if !ip.Equal(req.IP) {
			ignored = append(ignored, ip.String())
		}
	}
	for _, d := range csr.DNSNames {
		if d != req.Hostname {
			ignored = append(ignored, d)
		}
	}
	s.Log.Info("signed a worker certificate", "hostname", req.Hostname, "ip", req.IP.String(), "ignored_requested_names", strings.Join(ignored, ","))
	return ck.Crt, nil
}

// check authenticates a worker's certificate request by the
// machine token and decides what the certificate may name (Check);
// what names the kind of certificate in refusals and logs.
func (s *Signer) check(ctx context.Context, what string, csrPEM []byte, token string, peerIP net.IP) (*config.Config, *x509.CertificateRequest, Request, error) {
	cfg := s.Config()
	if cfg == nil || !cfg.IsControlPlane() || cfg.Machine.CA == nil || cfg.Machine.CA.Key == "" {
		return nil, nil, Request{}, fmt.Errorf("%w: only configured control-plane nodes sign certificates", errdefs.ErrFailedPrecondition)
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(cfg.Machine.Token)) != 1 {
		s.Log.Warn(what+" request with a wrong machine token refused", "peer", peerIP.String())
		return nil, nil, Request{}, fmt.Errorf("%w: %w: wrong machine token", errdefs.ErrPermissionDenied, ErrRefused)
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, nil, Request{}, fmt.Errorf("%w: %w: no PEM certificate request", errdefs.ErrInvalidArgument, ErrRefused)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		return nil, nil, Request{}, fmt.Errorf("%w: %w: invalid certificate request", errdefs.ErrInvalidArgument, ErrRefused)
	}
	req, err := Check(csr, peerIP, s.Reserved(ctx, cfg))
	if err == nil {
		err = s.claimable(ctx, cfg, req, Proof(ctx))
	}
	if err != nil {
		s.Log.Warn(what+" request refused", "peer", peerIP.String(), "hostname", csr.Subject.CommonName, "error", err)
		return nil, nil, Request{}, err
	}
	return cfg, csr, req, nil
}

// claimable refuses a name the registry holds for a machine at another
// address unless the caller proves it is that machine, presenting as its
// TLS client certificate one that names it: its worker machine-API
// certificate (OS CA, os:node:worker) or its kubelet's client certificate
// (cluster CA, system:node:<name>, kept on the node's disk across
// reboots). A worker whose address changed thus keeps its name; the
// machine token alone, shared by every worker, cannot take over another
// worker's name. A name is free again once its record is gone: another
// claim took its address, or the serving-CSR approver released it (its
// Node deleted, or not Ready for csrapprover.ReleaseAfter).
func (s *Signer) claimable(ctx context.Context, cfg *config.Config, req Request, proof *x509.Certificate) error {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rec, ok, err := s.Registry.Get(gctx, req.Hostname)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w: the machine registry cannot say who holds %q: %w", errdefs.ErrUnavailable, ErrRefused, req.Hostname, err)
	case !ok || slices.Contains(rec.Addresses, req.IP.String()):
		return nil
	}
	if proof != nil && provesName(cfg, proof, req.Hostname, s.Clock.Now()) {
		return nil
	}
	return fmt.Errorf("%w: %w: %q is the name of the machine at %s; that machine proves itself with its certificates when its address changes, and the name is free for another machine once its Node is deleted (kubectl delete node %s) or has not been Ready for a while",
		errdefs.ErrPermissionDenied, ErrRefused, req.Hostname, strings.Join(rec.Addresses, ", "), req.Hostname)
}

// provesName reports whether c names the machine name and is valid at
// now: a worker machine-API certificate of the OS CA, or a kubelet client
// certificate of the cluster CA.
func provesName(cfg *config.Config, c *x509.Certificate, name string, now time.Time) bool {
	verifies := func(caB64 string, usage x509.ExtKeyUsage) bool {
		caPEM, err := pki.DecodeB64(caB64)
		if err != nil {
			return false
		}
		pool, err := pki.Pool(caPEM)
		if err != nil {
			return false
		}
		_, err = c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
		return err == nil
	}
	switch {
	case c.Subject.CommonName == name && slices.Contains(c.Subject.Organization, pki.NodeWorker):
		return cfg.Machine.CA != nil && verifies(cfg.Machine.CA.Crt, x509.ExtKeyUsageServerAuth)
	case c.Subject.CommonName == "system:node:"+name && slices.Equal(c.Subject.Organization, []string{"system:nodes"}):
		return cfg.Cluster.CA != nil && verifies(cfg.Cluster.CA.Crt, x509.ExtKeyUsageClientAuth)
	}
	return false
}

// Proof is the certificate the caller of an RPC presented on its TLS
// connection (nil: none). It is not verified here: a presented certificate
// proves only what provesName checks, the handshake having proved the
// caller holds its key.
func Proof(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil
	}
	return info.State.PeerCertificates[0]
}

// SignKubelet signs a
// worker kubelet's client certificate when the worker presents the machine
// token. The certificate names system:node:<checked hostname>; the machine
// is recorded with the caller's address first, so the kubelet-serving
// approver knows it.
func (s *Signer) SignKubelet(ctx context.Context, csrPEM []byte, token string, peerIP net.IP) ([]byte, error) {
	cfg, csr, req, err := s.check(ctx, "kubelet certificate", csrPEM, token, peerIP)
	if err != nil {
		return nil, err
	}
	if !s.Kubernetes || cfg.Cluster.CA == nil || cfg.Cluster.CA.Key == "" {
		return nil, fmt.Errorf("%w: this control plane does not run Kubernetes", errdefs.ErrFailedPrecondition)
	}
	if err := s.record(ctx, req); err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
	}
	ca, err := pki.FromB64(cfg.Cluster.CA.Crt, cfg.Cluster.CA.Key)
	if err != nil {
		return nil, fmt.Errorf("cluster.ca: %w", err)
	}
	ck, err := pki.Issue(ca, KubeletClientRequest(req.Hostname, csr.PublicKey, CertificateLifetime(cfg)))
	if err != nil {
		return nil, err
	}
	s.Log.Info("signed a worker's kubelet client certificate", "node", req.Hostname, "ip", req.IP.String())
	return ck.Crt, nil
}

// record records a worker's checked hostname and address in the
// machine registry.
func (s *Signer) record(ctx context.Context, req Request) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return s.Registry.Put(cctx, machines.Record{
		Name: req.Hostname, Role: machines.RoleWorker, Addresses: []string{req.IP.String()}, Updated: s.Clock.Now().UTC(),
	})
}
