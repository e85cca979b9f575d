package nodectl

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/pki"
)

// TestExplainConnectFailures makes real connections fail in each way and
// checks that explain recognises the cause by its type (client.ConnectError),
// not by gRPC's message text.
func TestExplainConnectFailures(t *testing.T) {
	ourCA, err := pki.NewCA("ours", "ballast")
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := pki.NewCA("theirs", "ballast")
	if err != nil {
		t.Fatal(err)
	}
	serve := func(t *testing.T, ca *pki.CertAndKey, ip string) string {
		t.Helper()
		ck, err := pki.Issue(ca, pki.Request{CommonName: "node", Organization: []string{pki.NodeControlPlane}, IPs: []net.IP{net.ParseIP(ip)}, Usage: pki.UsageServer})
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
		srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})))
		machine.RegisterMachineServiceServer(srv, machine.UnimplementedMachineServiceServer{})
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(srv.Stop)
		return ln.Addr().String()
	}
	closed := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	for _, tc := range []struct {
		name string
		opts func(t *testing.T) client.Options
		want string
	}{
		{"connection refused", func(t *testing.T) client.Options {
			return client.Options{Address: closed(t), CA: ourCA.Crt, ServerOnly: true}
		}, "connection refused"},
		{"another cluster's CA", func(t *testing.T) client.Options {
			return client.Options{Address: serve(t, otherCA, "127.0.0.1"), CA: ourCA.Crt, ServerOnly: true}
		}, "not from this nodeconfig's OS CA"},
		{"an address the certificate does not cover", func(t *testing.T) client.Options {
			return client.Options{Address: serve(t, ourCA, "10.9.9.9"), CA: ourCA.Crt, ServerOnly: true}
		}, "does not cover the address"},
		{"a pinned fingerprint that does not match", func(t *testing.T) client.Options {
			return client.Options{Address: serve(t, otherCA, "127.0.0.1"), Insecure: true, Fingerprint: strings.Repeat("0", 64)}
		}, "does not match --cert-fingerprint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.New(tc.opts(t))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = c.Version(ctx, &machine.VersionRequest{})
			if err == nil {
				t.Fatal("the call succeeded")
			}
			if got := explain(err, "node").Error(); !strings.Contains(got, tc.want) {
				t.Fatalf("explain = %q, want %q (from %v)", got, tc.want, err)
			}
		})
	}
}
