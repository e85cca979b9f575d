// Package client dials the machine API of a Ballast node, either with mutual
// TLS (a nodeconfig context) or insecurely for a node in maintenance mode,
// optionally pinning the maintenance certificate's fingerprint.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/nodeconfig"
	"github.com/ballast-os/ballast/pkg/pki"
)

// DefaultPort is the machine API port.
const DefaultPort = 50000

// Errors of the server's identity, checkable with errors.Is (gRPC wraps them
// into an Unavailable status; the message keeps their text).
var (
	// ErrFingerprintMismatch is returned when a pinned fingerprint does not match.
	ErrFingerprintMismatch = errors.New("server certificate fingerprint does not match")
	// ErrNotControlPlane is returned when a control plane was expected at
	// the address but the server's certificate is a worker's (or carries no
	// node identity).
	ErrNotControlPlane = errors.New("server certificate is not a control-plane node's")
	// ErrNoNodeIdentity is returned when a configured node's certificate
	// names no node identity (os:node:controlplane or os:node:worker).
	ErrNoNodeIdentity = errors.New("server certificate carries no node identity")
)

// Options say how to reach and trust a node.
type Options struct {
	// Address is host or host:port (default port 50000).
	Address string
	// CA, Crt and Key are PEM: the OS CA and a client certificate.
	CA, Crt, Key []byte
	// Insecure skips server verification (maintenance mode only); with
	// Fingerprint set, the server's SPKI fingerprint must match instead.
	Insecure    bool
	Fingerprint string
	// ServerOnly verifies the server with CA and presents no client
	// certificate (a worker asking for its first certificate) — or Proof
	// when set.
	ServerOnly bool
	// Proof, with ServerOnly, is presented as the client certificate: a
	// worker's own machine-API certificate, proving which machine asks
	// (a worker whose address changed keeps its name with it).
	Proof *tls.Certificate
	// RequireControlPlane refuses a server whose certificate is not marked
	// os:node:controlplane: etcd operations, bootstrap, the context's
	// endpoints and a worker's certificate request all expect a control
	// plane, and a worker's certificate must not pass for one.
	RequireControlPlane bool
	// SourceIP, when set, is the local address connections are made from
	// (a worker calls from the address its certificate will name).
	SourceIP net.IP
}

// Client is a connection to one node's machine API.
type Client struct {
	machine.MachineServiceClient
	Address string
	conn    *grpc.ClientConn
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn returns the underlying connection for other services on the same port.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// New creates a client; the connection is established on the first call.
func New(opts Options) (*Client, error) {
	addr, err := HostPort(opts.Address)
	if err != nil {
		return nil, err
	}
	tlsConf, err := TLSConfig(opts)
	if err != nil {
		return nil, err
	}
	// Failures to connect keep their type (ConnectError) for callers to
	// match, instead of reaching them as gRPC message text only.
	errs := &connErrors{}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(recordingCreds{TransportCredentials: credentials.NewTLS(tlsConf), errs: errs}),
		grpc.WithContextDialer(errs.dialer(opts.SourceIP)),
		grpc.WithChainUnaryInterceptor(errs.unary),
		grpc.WithChainStreamInterceptor(errs.stream),
	}
	conn, err := grpc.NewClient(addr, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return &Client{MachineServiceClient: machine.NewMachineServiceClient(conn), Address: addr, conn: conn}, nil
}

// TLSConfig builds the client TLS configuration for opts.
func TLSConfig(opts Options) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS13}
	if opts.Insecure {
		conf.InsecureSkipVerify = true // verified below by fingerprint when pinned
		if fp := strings.ToLower(strings.TrimSpace(opts.Fingerprint)); fp != "" {
			conf.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return ErrFingerprintMismatch
				}
				if got := pki.Fingerprint(cs.PeerCertificates[0]); got != fp {
					return fmt.Errorf("%w: got %s, want %s", ErrFingerprintMismatch, got, fp)
				}
				return nil
			}
		}
		return conf, nil
	}
	conf.VerifyConnection = verifyNodeIdentity(opts)
	if opts.ServerOnly {
		pool, err := pki.Pool(opts.CA)
		if err != nil {
			return nil, fmt.Errorf("OS CA: %w", err)
		}
		conf.RootCAs = pool
		conf.ServerName = serverName(opts.Address)
		if opts.Proof != nil {
			conf.Certificates = []tls.Certificate{*opts.Proof}
		}
		return conf, nil
	}
	if len(opts.CA) == 0 || len(opts.Crt) == 0 || len(opts.Key) == 0 {
		return nil, errors.New("a CA and a client certificate are required (use a nodeconfig, or --insecure for a node in maintenance mode)")
	}
	pool, err := pki.Pool(opts.CA)
	if err != nil {
		return nil, fmt.Errorf("OS CA: %w", err)
	}
	cert, err := tls.X509KeyPair(opts.Crt, opts.Key)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	conf.RootCAs = pool
	conf.Certificates = []tls.Certificate{cert}
	conf.ServerName = serverName(opts.Address)
	return conf, nil
}

// verifyNodeIdentity checks, after the chain and the name were verified, that
// the server is a node of the kind the caller expects.
func verifyNodeIdentity(opts Options) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return ErrNoNodeIdentity
		}
		kind := pki.NodeKind(cs.PeerCertificates[0])
		switch {
		case kind == "":
			return fmt.Errorf("%w (%s)", ErrNoNodeIdentity, opts.Address)
		case opts.RequireControlPlane && kind != pki.NodeControlPlane:
			return fmt.Errorf("%w: %s presents a %s certificate where a control plane was expected", ErrNotControlPlane, opts.Address, kind)
		}
		return nil
	}
}

func serverName(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return strings.Trim(addr, "[]")
}

// FromContext builds options for address from a nodeconfig context.
func FromContext(c *nodeconfig.Context, address string) (Options, error) {
	ca, err := pki.DecodeB64(c.CA)
	if err != nil {
		return Options{}, fmt.Errorf("nodeconfig ca: %w", err)
	}
	crt, err := pki.DecodeB64(c.Crt)
	if err != nil {
		return Options{}, fmt.Errorf("nodeconfig crt: %w", err)
	}
	key, err := pki.DecodeB64(c.Key)
	if err != nil {
		return Options{}, fmt.Errorf("nodeconfig key: %w", err)
	}
	return Options{Address: address, CA: ca, Crt: crt, Key: key}, nil
}

// HostPort accepts host, host:port, [v6] or [v6]:port and returns host:port.
func HostPort(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("empty node address")
	}
	if host, port, err := net.SplitHostPort(s); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("invalid port in %q", s)
		}
		return net.JoinHostPort(host, port), nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	return net.JoinHostPort(host, strconv.Itoa(DefaultPort)), nil
}

// Ping calls Version to check reachability.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.Version(ctx, &machine.VersionRequest{})
	return err
}

// NewFromContext creates a client for address with a nodeconfig context's
// credentials.
func NewFromContext(c *nodeconfig.Context, address string) (*Client, error) {
	opts, err := FromContext(c, address)
	if err != nil {
		return nil, err
	}
	return New(opts)
}
