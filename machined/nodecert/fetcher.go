// Package nodecert is a worker's side of its certificates: the node-cert
// controller that obtains the worker's machine-API certificate from a
// control plane (certsigner on the other end) and serves it, again when
// the hostname, the OS CA, the machine token or the control planes change;
// and Ask, the client of a control plane's CertificateService that the
// kubelet's client certificate uses too. The control plane is verified as
// one of the OS CA the worker already holds.
package nodecert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/pki"
)

// Fetcher is the worker's node-cert controller.
type Fetcher struct {
	// Config returns the machine config and a channel closed when it
	// changes.
	Config func() (*config.Config, <-chan struct{})
	// Hostname is the name the certificate asks for.
	Hostname func(*config.Config) string
	// Source is the address the node calls from: the signer certifies the
	// address it sees the call come from.
	Source func(*config.Config) net.IP
	// Serve puts a new certificate in use.
	Serve func(tls.Certificate, *x509.CertPool)
	// Current is what the worker presents as proof of which machine asks
	// (its kubelet's client certificate or the certificate in use; nil:
	// none yet).
	Current func() *tls.Certificate
	Clock   clock.Clock
	Log     *slog.Logger
}

// inputs is what a worker's certificate depends on in the config: a
// change fetches a new one.
func (f *Fetcher) inputs(cfg *config.Config) string {
	return fmt.Sprint(f.Hostname(cfg), cfg.Machine.CA.Crt, cfg.Machine.Token, ControlPlaneHosts(cfg))
}

// Run is the worker's node-cert service: it asks the
// control-plane nodes for a machine-API certificate (verifying that they are
// control planes of the OS CA it already holds) and serves it, and asks
// again when the hostname, the CA or the control planes change.
func (f *Fetcher) Run(ctx context.Context, out io.Writer) error {
	for {
		cfg, changed := f.Config()
		inputs := f.inputs(cfg)
		if err := f.fetchOnce(ctx, cfg, out); err != nil || ctx.Err() != nil {
			return err
		}
		for f.inputs(cfg) == inputs {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			}
			cfg, changed = f.Config()
		}
		f.Log.Info("the config changed what the worker certificate names; fetching a new one")
	}
}

// fetchOnce obtains one certificate for cfg and serves it.
func (f *Fetcher) fetchOnce(ctx context.Context, cfg *config.Config, out io.Writer) error {
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
	source := f.Source(cfg)
	csrDER, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: f.Hostname(cfg)},
	}, key)
	if err != nil {
		return fmt.Errorf("create CSR: %w", err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})
	delay := time.Second
	for {
		for _, addr := range ControlPlaneHosts(cfg) {
			crt, err := Ask(ctx, addr, source, caPEM, f.Current(), func(ctx context.Context, c machine.CertificateServiceClient) (*machine.SignNodeCertificateResponse, error) {
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
			f.Serve(cert, pool)
			fmt.Fprintf(out, "machine-API certificate issued by %s\n", addr)
			f.Log.Info("worker machine-API certificate obtained", "from", addr, "names", fmt.Sprint(cert.Leaf.DNSNames, cert.Leaf.IPAddresses))
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-f.Clock.After(delay):
		}
		delay = min(delay*2, 15*time.Second)
	}
}

// ControlPlaneHosts are the control-plane hosts a worker knows of; the port
// of a peer entry is etcd's, so only the host is kept.
func ControlPlaneHosts(cfg *config.Config) []string {
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

// Ask calls one RPC of a control plane's CertificateService,
// verifying it is a control plane of the OS CA caPEM, from source (the
// address the signer certifies), presenting proof (the worker's current
// machine-API certificate; nil: none yet) as who asks.
func Ask(ctx context.Context, addr string, source net.IP, caPEM []byte, proof *tls.Certificate,
	call func(context.Context, machine.CertificateServiceClient) (*machine.SignNodeCertificateResponse, error)) ([]byte, error) {
	c, err := client.New(client.Options{Address: addr, CA: caPEM, ServerOnly: true, Proof: proof, RequireControlPlane: true, SourceIP: source})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := call(cctx, machine.NewCertificateServiceClient(c.Conn()))
	if err != nil {
		return nil, err
	}
	if len(resp.GetCrt()) == 0 {
		return nil, errors.New("empty certificate")
	}
	return resp.GetCrt(), nil
}
