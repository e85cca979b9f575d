package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/pki"
	"github.com/ballast-os/ballast/pkg/secrets"
)

// testWorkerImpersonation plays the holder of a worker.yaml on the host
// (hostIP, the cluster bridge's address): it asks a control plane for a
// certificate naming that control plane's address and name, gets one that
// names only hostIP, then serves it and checks that nodectl refuses it
// wherever a control plane is expected.
func testWorkerImpersonation(t *testing.T, c *localCluster, cpAddr, hostIP string) {
	bundle, err := secrets.Load(filepath.Join(c.root, c.name, "secrets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := pki.DecodeB64(bundle.Certs.OS.Crt)
	if err != nil {
		t.Fatal(err)
	}
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	sign := func(cn string) ([]byte, error) {
		der, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: cn}, DNSNames: []string{c.name + "-cp1"}, IPAddresses: []net.IP{net.ParseIP(cpAddr)},
		}, key)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := client.New(client.Options{Address: cpAddr, CA: caPEM, ServerOnly: true, RequireControlPlane: true})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		resp, err := machine.NewCertificateServiceClient(cl.Conn()).SignNodeCertificate(ctx, &machine.SignNodeCertificateRequest{
			Csr: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), Token: bundle.Secrets.MachineToken,
		})
		return resp.GetCrt(), err
	}

	// The control plane's member name is refused outright.
	if _, err := sign(c.name + "-cp1"); err == nil || !strings.Contains(err.Error(), "control-plane or cluster-reserved name") {
		t.Fatalf("a certificate request naming control plane %s-cp1 was not refused: %v", c.name, err)
	}
	crtPEM, err := sign("impostor")
	if err != nil {
		t.Fatalf("worker certificate request: %v", err)
	}
	crt, err := pki.ParseCert(crtPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(crt.IPAddresses) != 1 || crt.IPAddresses[0].String() != hostIP || len(crt.DNSNames) != 1 || crt.DNSNames[0] != "impostor" || pki.NodeKind(crt) != pki.NodeWorker {
		t.Fatalf("issued certificate names %v %v as %v; want only %s and impostor as %s", crt.IPAddresses, crt.DNSNames, crt.Subject.Organization, hostIP, pki.NodeWorker)
	}

	// Serve the worker certificate where nodectl might look for a control plane.
	cert, err := (&pki.CertAndKey{Crt: crtPEM, Key: keyPEM}).TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(hostIP, "50000"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS13})))
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()

	for _, args := range [][]string{
		{"-n", hostIP, "etcd", "members"},
		{"-n", hostIP, "bootstrap"},
		{"-n", hostIP, "-e", hostIP, "version"},
	} {
		r := c.nodectl(args...)
		if r.code == 0 || !strings.Contains(r.stderr, "not a control-plane node's") {
			t.Errorf("nodectl %s accepted a worker's certificate where a control plane is expected:\n%s", strings.Join(args, " "), r)
		}
	}
	// Where any node may answer, the handshake passes (the fake server has
	// no services): the refusal above is about the node kind, not the chain.
	if r := c.nodectl("-n", hostIP, "version"); !strings.Contains(r.stderr, "Unimplemented") && !strings.Contains(r.stderr, "unknown service") {
		t.Errorf("a valid worker certificate was refused where any node may answer:\n%s", r)
	}
}
