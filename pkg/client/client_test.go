package client

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/ballast-os/ballast/pkg/pki"
)

// serve runs a TLS gRPC server with no services on 127.0.0.1 that presents
// a certificate of the OS CA with the given Organization.
func serve(t *testing.T, ca *pki.CertAndKey, org []string) string {
	t.Helper()
	ck, err := pki.Issue(ca, pki.Request{CommonName: "node", Organization: org, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Usage: pki.UsageServer})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ck.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})))
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// TestNodeIdentity: a client that expects a control plane refuses a
// worker's certificate (and one without a node identity), even though the
// certificate chains to the OS CA and names the address.
func TestNodeIdentity(t *testing.T) {
	ca, err := pki.NewCA("os")
	if err != nil {
		t.Fatal(err)
	}
	client, err := pki.Issue(ca, pki.Request{CommonName: "admin", Organization: []string{pki.RoleAdmin}, Usage: pki.UsageClient})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		serverOrg  []string
		requireCP  bool
		serverOnly bool
		wantErr    string // "" means the handshake succeeds
	}{
		{"worker where any node is fine", []string{pki.NodeWorker}, false, false, ""},
		{"worker where a control plane is expected", []string{pki.NodeWorker}, true, false, "not a control-plane node's"},
		{"worker asked for a certificate by another worker", []string{pki.NodeWorker}, true, true, "not a control-plane node's"},
		{"control plane where a control plane is expected", []string{pki.NodeControlPlane}, true, false, ""},
		{"no node identity", nil, false, false, "no node identity"},
		{"a role is not a node identity", []string{pki.RoleAdmin}, true, false, "no node identity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, ca, tt.serverOrg)
			opts := Options{Address: addr, CA: ca.Crt, RequireControlPlane: tt.requireCP, ServerOnly: tt.serverOnly}
			if !tt.serverOnly {
				opts.Crt, opts.Key = client.Crt, client.Key
			}
			c, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = c.Ping(ctx)
			// The server has no services: a completed handshake answers Unimplemented.
			if tt.wantErr == "" {
				if status.Code(err) != codes.Unimplemented {
					t.Fatalf("handshake failed: %v", err)
				}
				return
			}
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want a refused handshake mentioning %q", err, tt.wantErr)
			}
		})
	}
}
