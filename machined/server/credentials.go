package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
)

// Credentials is the server side of the machine API's TLS. It starts in
// maintenance mode (a self-signed certificate, no client certificates) and
// switches once to configured mode (a certificate from the OS CA, client
// certificates verified against it) without closing the listener: every new
// handshake sees the current mode, and the per-RPC interceptor refuses any
// connection that lacks a verified client certificate once configured.
type Credentials struct {
	mu          sync.RWMutex
	maintenance bool
	cert        tls.Certificate
	clientCAs   *x509.CertPool
}

// NewMaintenanceCredentials serves cert (self-signed) without client auth.
func NewMaintenanceCredentials(cert tls.Certificate) *Credentials {
	return &Credentials{maintenance: true, cert: cert}
}

// NewConfiguredCredentials serves cert and requires client certificates
// issued by clientCAs.
func NewConfiguredCredentials(cert tls.Certificate, clientCAs *x509.CertPool) *Credentials {
	return &Credentials{cert: cert, clientCAs: clientCAs}
}

// SetConfigured leaves maintenance mode (or rotates the configured certificate).
func (c *Credentials) SetConfigured(cert tls.Certificate, clientCAs *x509.CertPool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.maintenance, c.cert, c.clientCAs = false, cert, clientCAs
}

// Maintenance reports whether the API is in maintenance mode.
func (c *Credentials) Maintenance() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.maintenance
}

// ServerCertificate returns the certificate currently served.
func (c *Credentials) ServerCertificate() tls.Certificate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert
}

// VerifyClient checks a client's certificate chain against the OS CA and
// returns the leaf certificate.
func (c *Credentials) VerifyClient(chain []*x509.Certificate) (*x509.Certificate, error) {
	c.mu.RLock()
	pool := c.clientCAs
	c.mu.RUnlock()
	if len(chain) == 0 {
		return nil, errNoClientCert
	}
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errForeignClientCert, err)
	}
	return chain[0], nil
}

var (
	errNoClientCert      = errors.New("node is configured: a client certificate from its OS CA is required (use a nodeconfig; --insecure works only in maintenance mode)")
	errForeignClientCert = errors.New("client certificate is not issued by this node's OS CA")
)

// TLSConfig returns the listener's TLS configuration.
func (c *Credentials) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c.mu.RLock()
			defer c.mu.RUnlock()
			conf := &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{c.cert},
				NextProtos:   []string{"h2"},
			}
			if !c.maintenance {
				// The handshake proves the client holds the certificate's key;
				// the chain to the OS CA is verified on every call by the
				// interceptor (VerifyClient), which can then say clearly why a
				// missing or foreign certificate is refused. TLS 1.3 would
				// otherwise surface a rejected certificate as a broken pipe.
				conf.ClientAuth = tls.RequestClientCert
			}
			return conf, nil
		},
	}
}
