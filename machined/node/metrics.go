package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/ballast-os/ballast/machined/etcd"
	"github.com/ballast-os/ballast/machined/metrics"
	"github.com/ballast-os/ballast/pkg/pki"
)

// This file is the metrics endpoint's controller: it serves Prometheus
// metrics on the node's address, plain or with mutual TLS
// (machine.metrics.mtls), and serves again when either changes.

// metricsRoles may scrape when machine.metrics.mtls is on.
var metricsRoles = []string{pki.RoleAdmin, pki.RoleOperator, pki.RoleReader}

// metricsListening is where and how the metrics are served now (for the
// health probe).
type metricsListening struct {
	mu   sync.Mutex
	addr string
	mtls bool
}

// runMetrics serves until ctx ends, again whenever the address or
// machine.metrics changes.
func (n *Node) runMetrics(ctx context.Context, out io.Writer) error {
	for {
		cfg, changed := n.Config()
		addr, mtls := n.metricsAddr(cfg), cfg != nil && cfg.Machine.Metrics.MTLS
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen for metrics: %w", err)
		}
		scheme := "http"
		if mtls {
			ln, scheme = tls.NewListener(ln, n.metricsTLS()), "https (client certificates of the OS CA)"
		}
		n.metricsAt.mu.Lock()
		n.metricsAt.addr, n.metricsAt.mtls = addr, mtls
		n.metricsAt.mu.Unlock()
		fmt.Fprintf(out, "serving metrics on %s://%s/metrics\n", scheme, addr)
		sctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- metrics.Serve(sctx, ln, n.metrics.Gatherer()) }()
		again := false
		for !again {
			select {
			case err := <-done:
				stop()
				return err
			case <-ctx.Done():
				stop()
				return <-done
			case <-changed:
			case <-n.clock.After(etcd.AddressPoll): // the advertise address may change
			}
			cur, ch := n.Config()
			changed = ch
			again = n.metricsAddr(cur) != addr || (cur != nil && cur.Machine.Metrics.MTLS) != mtls
		}
		stop()
		if err := <-done; err != nil {
			return err
		}
		fmt.Fprintln(out, "metrics address or TLS changed: serving again")
	}
}

// metricsTLS serves the machine-API certificate (current at each
// handshake) and requires a client certificate of the OS CA with a reader
// role or more.
func (n *Node) metricsTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c := n.creds.ServerCertificate()
			return &c, nil
		},
		ClientAuth: tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			var chain []*x509.Certificate
			for _, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				chain = append(chain, c)
			}
			leaf, err := n.creds.VerifyClient(chain)
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(leaf.Subject.Organization, func(o string) bool { return slices.Contains(metricsRoles, o) }) {
				return errMetricsRole
			}
			return nil
		},
	}
}

var errMetricsRole = errors.New("metrics need a client certificate with role os:admin, os:operator or os:reader")

// probeMetrics checks the endpoint: a scrape when it is plain, a TCP
// connect when it asks for client certificates (the agent holds none).
func (n *Node) probeMetrics(ctx context.Context) error {
	n.metricsAt.mu.Lock()
	addr, mtls := n.metricsAt.addr, n.metricsAt.mtls
	n.metricsAt.mu.Unlock()
	if addr == "" {
		return errors.New("not serving yet")
	}
	if !mtls {
		return metrics.Probe(ctx, addr)
	}
	d := net.Dialer{Timeout: 3 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("probe metrics: %w", err)
	}
	return c.Close()
}
