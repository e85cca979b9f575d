package certsigner

import (
	"context"
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
)

type fakeRegistry struct {
	put  []machines.Record
	fail error
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
// for a refused request.
func TestSignKubelet(t *testing.T) {
	cfg := gentest.New(t).ControlPlane
	key, _, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
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
		wantErr  error
	}{
		{name: "the worker's own name", cn: "w1", token: cfg.Machine.Token, peer: "10.5.0.5"},
		{name: "a wrong token", cn: "w1", token: "nope", peer: "10.5.0.5", wantErr: errdefs.ErrPermissionDenied},
		{name: "the apiserver's name", cn: "kubernetes.default.svc", token: cfg.Machine.Token, peer: "10.5.0.5", wantErr: errdefs.ErrPermissionDenied},
		{name: "from the VIP", cn: "w1", token: cfg.Machine.Token, peer: "10.5.0.254", wantErr: errdefs.ErrPermissionDenied},
		{name: "the registry is down", cn: "w1", token: cfg.Machine.Token, peer: "10.5.0.5", registry: errors.New("etcd unavailable"), wantErr: errdefs.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := &fakeRegistry{fail: tc.registry}
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
			crt, err := s.SignKubelet(context.Background(), csr(tc.cn), tc.token, net.ParseIP(tc.peer))
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
			if len(reg.put) != 1 || reg.put[0].Name != "w1" || !slices.Equal(reg.put[0].Addresses, []string{"10.5.0.5"}) || reg.put[0].Role != machines.RoleWorker {
				t.Fatalf("recorded %+v, want w1 at 10.5.0.5", reg.put)
			}
		})
	}
}
