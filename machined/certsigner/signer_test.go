package certsigner

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"testing"

	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/machines"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/pki"
)

// TestCheckWorkerCSR is the reproducer of a review finding: the signer used
// to certify whatever names and addresses the CSR asked for, so anyone with
// a worker.yaml could get a certificate for a control plane's address.
func TestCheckWorkerCSR(t *testing.T) {
	cfg := &config.Config{}
	cfg.Cluster.ControlPlane.Endpoint = "https://api.example.internal:6443"
	cfg.Cluster.Network.DNSDomain = "cluster.local"
	cfg.Cluster.Network.ServiceSubnets = []string{"10.96.0.0/12"}
	cfg.Cluster.Network.PodSubnets = []string{"10.244.0.0/16"}
	reserved := machines.ClusterReserved(cfg)
	for _, h := range []string{"cp1", "10.5.0.2", "10.5.0.10"} {
		reserved.AddHost(h)
	}
	key, _, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr := func(cn string, ips ...string) *x509.CertificateRequest {
		tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: []string{"cp1", "localhost"}}
		for _, ip := range ips {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
		}
		der, err := x509.CreateCertificateRequest(nil, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name     string
		csr      *x509.CertificateRequest
		peer     string
		wantHost string
		wantIP   string
		wantErr  error
	}{
		{"asks for a control plane's IP: gets only its own", csr("w1", "10.5.0.2", "10.5.0.5"), "10.5.0.5", "w1", "10.5.0.5", nil},
		{"hostname is lower-cased", csr("Worker-1.Example.Internal."), "10.5.0.5", "worker-1.example.internal", "10.5.0.5", nil},
		{"calls from a control plane's address", csr("w1"), "10.5.0.2", "", "", errdefs.ErrPermissionDenied},
		{"calls from the VIP", csr("w1"), "10.5.0.10", "", "", errdefs.ErrPermissionDenied},
		{"claims a control plane's name", csr("cp1"), "10.5.0.5", "", "", errdefs.ErrPermissionDenied},
		{"claims a certSAN of the control plane", csr("api.example.internal"), "10.5.0.5", "", "", errdefs.ErrPermissionDenied},
		{"claims localhost", csr("localhost"), "10.5.0.5", "", "", errdefs.ErrPermissionDenied},
		// The review's attack: system:node:kubernetes.default.svc.
		{"claims kubernetes.default.svc", csr("kubernetes.default.svc"), "10.5.0.5", "", "", errdefs.ErrPermissionDenied},
		{"claims kubernetes", csr("kubernetes"), "10.5.0.5", "", "", errdefs.ErrPermissionDenied},
		{"claims a name under the cluster domain", csr("evil.default.svc.cluster.local"), "10.5.0.5", "", "", errdefs.ErrPermissionDenied},
		{"a name that merely starts with kubernetes is fine", csr("kubernetes-worker-1"), "10.5.0.5", "kubernetes-worker-1", "10.5.0.5", nil},
		{"calls from a Service address", csr("w1"), "10.96.0.1", "", "", errdefs.ErrPermissionDenied},
		{"calls from a pod address", csr("w1"), "10.244.3.9", "", "", errdefs.ErrPermissionDenied},
		{"hostname is an IP", csr("10.5.0.2"), "10.5.0.5", "", "", errdefs.ErrInvalidArgument},
		{"hostname with a wildcard", csr("*.example.internal"), "10.5.0.5", "", "", errdefs.ErrInvalidArgument},
		{"no hostname", csr(""), "10.5.0.5", "", "", errdefs.ErrInvalidArgument},
		{"unknown caller address", csr("w1"), "", "", "", errdefs.ErrPermissionDenied},
		{"IPv4-mapped control-plane address", csr("w1"), "::ffff:10.5.0.2", "", "", errdefs.ErrPermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Check(tt.csr, net.ParseIP(tt.peer), reserved)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrRefused) {
					t.Fatalf("err = %v, want %v and ErrRefused", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Hostname != tt.wantHost || got.IP.String() != tt.wantIP {
				t.Fatalf("certifies %s %s, want %s %s", got.Hostname, got.IP, tt.wantHost, tt.wantIP)
			}
		})
	}
}
