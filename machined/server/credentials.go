package server

import (
	"crypto/tls"
	"crypto/x509"
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
				// A foreign certificate fails the handshake; a missing one is
				// let through so the interceptor can say clearly why it refuses.
				conf.ClientAuth = tls.VerifyClientCertIfGiven
				conf.ClientCAs = c.clientCAs
			}
			return conf, nil
		},
	}
}
