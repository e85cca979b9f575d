package kubelet

import (
	"context"
	"crypto"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/gen/gentest"
	"github.com/ballast-os/ballast/pkg/pki"
)

// TestClientCertEnsure: the kubelet gets a client certificate when it has
// none, keeps a valid one, and gets a new one when the node's name changes
// (dropping the serving certificate of the old name), when a worker's
// address changes (the registry must learn it), and when the certificate
// is near its end. The key is written 0600.
func TestClientCertEnsure(t *testing.T) {
	cluster := gentest.New(t)
	worker := cluster.Worker
	ca, err := pki.FromB64(cluster.Secrets.Certs.Kubernetes.Crt, cluster.Secrets.Certs.Kubernetes.Key)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Now())
	signed := 0
	p := k8s.NewKubeletPaths(t.TempDir())
	c := &ClientCert{Paths: p, Clock: clk, Sign: func(_ context.Context, _ *config.Config, kn k8s.KubeletNode, key crypto.Signer) ([]byte, error) {
		signed++
		ck, err := pki.Issue(ca, pki.Request{CommonName: "system:node:" + kn.Name, Organization: []string{"system:nodes"}, Usage: pki.UsageClient, PublicKey: key.Public(), Validity: 24 * time.Hour})
		if err != nil {
			return nil, err
		}
		return ck.Crt, nil
	}}
	w1 := k8s.KubeletNode{Name: "w1", IP: "10.5.0.5", LocalEndpoint: "https://127.0.0.1:7445"}
	servingOfW1 := func() {
		ck, err := pki.Issue(ca, pki.Request{CommonName: "system:node:w1", Usage: pki.UsageServer, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.CertDir(), "kubelet-server-current.pem"), ck.Crt, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	renamed, moved := w1, w1
	renamed.Name = "w1-new"
	moved.IP = "10.5.0.9"
	for _, step := range []struct {
		name    string
		node    k8s.KubeletNode
		advance time.Duration
		signs   bool
	}{
		{"none yet", w1, 0, true},
		{"a valid one is kept", w1, 0, false},
		{"the node was renamed", renamed, 0, true},
		{"the worker's address changed", moved, 0, true},
		{"kept again", moved, time.Hour, false},
		{"less than a tenth of its life left", moved, 21 * time.Hour, true},
	} {
		before := signed
		if step.name == "the node was renamed" {
			servingOfW1()
		}
		clk.Advance(step.advance)
		if err := c.Ensure(context.Background(), worker, step.node, io.Discard); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := signed > before; got != step.signs {
			t.Fatalf("%s: signed %t, want %t", step.name, got, step.signs)
		}
		if step.name == "the node was renamed" {
			if _, err := os.Stat(filepath.Join(p.CertDir(), "kubelet-server-current.pem")); !os.IsNotExist(err) {
				t.Fatalf("the serving certificate of the old name survived a rename (%v)", err)
			}
		}
	}
	target, err := os.Readlink(p.ClientCert())
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(target); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v %v, want 0600", target, st.Mode(), err)
	}
}
