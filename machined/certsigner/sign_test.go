package certsigner

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/machines"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/gen/gentest"
	"github.com/ballast-os/ballast/pkg/pki"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

type fakeRegistry struct {
	held []machines.Record // there before the call
	put  []machines.Record
	fail error
}

func (f *fakeRegistry) Get(_ context.Context, name string) (machines.Record, bool, error) {
	if f.fail != nil {
		return machines.Record{}, false, f.fail
	}
	for _, r := range f.held {
		if r.Name == name {
			return r, true, nil
		}
	}
	return machines.Record{}, false, nil
}

func (f *fakeRegistry) Put(_ context.Context, r machines.Record) error {
	if f.fail != nil {
		return f.fail
	}
	f.put = append(f.put, r)
	return nil
}

// TestSignKubelet: with the machine token a worker gets a kubelet client
// certificate for system:node:<its checked hostname> in system:nodes, for
// client use only, recorded first with the address the call came from; it
// can not get one with a wrong token, for a reserved name, from a reserved
// address, or when the registry cannot record it — and nothing is recorded
// for a refused request. A name held by a machine at another address is
// refused unless the caller presents that machine's certificate (its
// address changed), not another worker's nor one of another CA.
func TestSignKubelet(t *testing.T) {
	cluster := gentest.New(t)
	cfg := cluster.ControlPlane
	key, _, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	osCA, err := pki.FromB64(cfg.Machine.CA.Crt, cfg.Machine.CA.Key)
	if err != nil {
		t.Fatal(err)
	}
	foreignCA, err := pki.NewCA("another OS CA")
	if err != nil {
		t.Fatal(err)
	}
	// proof is a worker machine-API certificate, as certsigner issues.
	proof := func(ca *pki.CertAndKey, name string) *x509.Certificate {
		ck, err := pki.Issue(ca, pki.Request{CommonName: name, Organization: []string{pki.NodeWorker}, DNSNames: []string{name}, Usage: pki.UsageServer})
		if err != nil {
			t.Fatal(err)
		}
		c, err := pki.ParseCert(ck.Crt)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	w1At5 := []machines.Record{{Name: "w1", Role: machines.RoleWorker, Addresses: []string{"10.5.0.5"}}}
	csr := func(cn string) []byte {
		der, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: cn, Organization: []string{"system:masters"}}, DNSNames: []string{"kubernetes"}, IPAddresses: []net.IP{net.ParseIP("10.5.0.254")},
		}, key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	for _, tc := range []struct {
		name     string
		cn       string
		token    string
		peer     string
		registry error
		held     []machines.Record
		proof    *x509.Certificate
		wantErr  error
	}{
		{name: "the worker's own name", cn: "w1", token: cfg.Machine.Token, peer: "10.5.0.5"},
		{name: "a wrong token", cn: "w1", token: "nope", peer: "10.5.0.5", wantErr: errdefs.ErrPermissionDenied},
		{name: "the apiserver's name", cn: "kubernetes.default.svc", token: cfg.Machine.Token, peer: "10.5.0.5", wantErr: errdefs.ErrPermissionDenied},
		{name: "from the VIP", cn: "w1", token: cfg.Machine.Token, peer: "10.5.0.254", wantErr: errdefs.ErrPermissionDenied},
		{name: "the registry is down", cn: "w1", token: cfg.Machine.Token, peer: "10.5.0.5", registry: errors.New("etcd unavailable"), wantErr: errdefs.ErrUnavailable},
		{name: "its own name, already recorded at its address", cn: "w1", token: cfg.Machine.Token, peer: "10.5.0.5", held: w1At5},
		{name: "another worker's name from another address", cn: "w1", token: cfg.Machine.Token, peer: "10.5.0.9", held: w1At5, wantErr: errdefs.ErrPermissionDenied},
		{name: "the same, with another worker's certificate", cn: "w1", token: cfg.Machine.Token, peer: "10.5.0.9", held: w1At5, proof: proof(osCA, "w2"), wantErr: errdefs.ErrPermissionDenied},
		{name: "the same, with a certificate of another CA", cn: "w1", token: cfg.Machine.Token, peer: "10.5.0.9", held: w1At5, proof: proof(foreignCA, "w1"), wantErr: errdefs.ErrPermissionDenied},
		{name: "the machine itself at its new address, with its certificate", cn: "w1", token: cfg.Machine.Token, peer: "10.5.0.9", held: w1At5, proof: proof(osCA, "w1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := &fakeRegistry{fail: tc.registry, held: tc.held}
			s := &Signer{
				Config: func() *config.Config { return cfg },
				Reserved: func(context.Context, *config.Config) machines.Reserved {
					r := machines.ClusterReserved(cfg)
					r.AddURL(cfg.Cluster.ControlPlane.Endpoint)
					return r
				},
				Registry: reg, Kubernetes: true,
				Clock: clock.NewFake(time.Now()), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			}
			ctx := context.Background()
			if tc.proof != nil {
				ctx = peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{tc.proof}}}})
			}
			crt, err := s.SignKubelet(ctx, csr(tc.cn), tc.token, net.ParseIP(tc.peer))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || crt != nil {
					t.Fatalf("got %v (certificate: %t), want %v and no certificate", err, crt != nil, tc.wantErr)
				}
				if len(reg.put) != 0 {
					t.Fatalf("a refused request was recorded: %v", reg.put)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, err := pki.ParseCert(crt)
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject.CommonName != "system:node:w1" || !slices.Equal(c.Subject.Organization, []string{"system:nodes"}) ||
				len(c.DNSNames) != 0 || len(c.IPAddresses) != 0 || !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
				t.Fatalf("certificate %s %v dns %v ips %v usage %v: names more than the checked node", c.Subject.CommonName, c.Subject.Organization, c.DNSNames, c.IPAddresses, c.ExtKeyUsage)
			}
			if len(reg.put) != 1 || reg.put[0].Name != "w1" || !slices.Equal(reg.put[0].Addresses, []string{tc.peer}) || reg.put[0].Role != machines.RoleWorker {
				t.Fatalf("recorded %+v, want w1 at %s", reg.put, tc.peer)
			}
		})
	}
}
