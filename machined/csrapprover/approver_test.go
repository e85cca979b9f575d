package csrapprover

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/kube"
	"github.com/ballast-os/ballast/machined/machines"
	"github.com/ballast-os/ballast/pkg/config"
)

func servingCSR(t *testing.T, user, cn string, org []string, dns []string, ips ...string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: org}, DNSNames: dns}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
		Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		SignerName: certificatesv1.KubeletServingSignerName,
		Username:   user,
		Groups:     []string{"system:nodes", "system:authenticated"},
		Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
	}}
}

func nodeWith(name string, ips ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	return n
}

// TestCheckServingCSR: a node obtains a serving certificate only for its own
// name and the addresses Ballast verified for its machine; never for the
// apiserver's names, the VIP, a Service or pod address, another machine's
// address, or an address it merely reports in its own Node status.
func TestCheckServingCSR(t *testing.T) {
	cfg := &config.Config{}
	cfg.Cluster.ControlPlane.Endpoint = "https://api.lab.example:6443"
	cfg.Cluster.Network.DNSDomain = "cluster.local"
	cfg.Cluster.Network.ServiceSubnets = []string{"10.96.0.0/12"}
	cfg.Cluster.Network.PodSubnets = []string{"10.244.0.0/16"}
	cfg.Machine.Network.Interfaces = []config.Interface{{Interface: "eth0", VIP: &config.VIP{IP: "10.5.0.254"}}}
	records := []machines.Record{
		{Name: "cp1", Role: machines.RoleControlPlane, Addresses: []string{"10.5.0.2"}},
		{Name: "w1", Role: machines.RoleWorker, Addresses: []string{"10.5.0.5"}},
		{Name: "w2", Role: machines.RoleWorker, Addresses: []string{"10.5.0.6"}},
	}
	known := func(name string, node *corev1.Node) Facts {
		f := Facts{Node: node, Machines: records, Reserved: machines.ClusterReserved(cfg)}
		for i := range records {
			if records[i].Name == name {
				f.Machine = &records[i]
			}
		}
		return f
	}
	org := []string{"system:nodes"}
	w1 := known("w1", nodeWith("w1", "10.5.0.5"))
	for _, tc := range []struct {
		name   string
		csr    *certificatesv1.CertificateSigningRequest
		facts  Facts
		want   string // "" approve, "not yet", else part of the denial
		mutate func(*certificatesv1.CertificateSigningRequest)
	}{
		{name: "own name and address", csr: servingCSR(t, "system:node:w1", "system:node:w1", org, []string{"w1"}, "10.5.0.5"), facts: w1},
		{name: "a control plane's own", csr: servingCSR(t, "system:node:cp1", "system:node:cp1", org, []string{"cp1"}, "10.5.0.2"), facts: known("cp1", nodeWith("cp1", "10.5.0.2"))},
		{name: "kubernetes.default.svc as a DNS name", csr: servingCSR(t, "system:node:w1", "system:node:w1", org, []string{"w1", "kubernetes.default.svc"}, "10.5.0.5"), facts: w1, want: `DNS name "kubernetes.default.svc"`},
		{name: "a node named kubernetes.default.svc", csr: servingCSR(t, "system:node:kubernetes.default.svc", "system:node:kubernetes.default.svc", org, []string{"kubernetes.default.svc"}),
			facts: known("kubernetes.default.svc", nodeWith("kubernetes.default.svc")), want: "reserved"},
		{name: "the VIP", csr: servingCSR(t, "system:node:w1", "system:node:w1", org, []string{"w1"}, "10.5.0.254"), facts: w1, want: "10.5.0.254 is reserved"},
		{name: "the kubernetes Service IP", csr: servingCSR(t, "system:node:w1", "system:node:w1", org, []string{"w1"}, "10.96.0.1"), facts: w1, want: "10.96.0.1 is reserved"},
		{name: "a pod address", csr: servingCSR(t, "system:node:w1", "system:node:w1", org, []string{"w1"}, "10.244.1.7"), facts: w1, want: "10.244.1.7 is reserved"},
		{name: "loopback", csr: servingCSR(t, "system:node:w1", "system:node:w1", org, []string{"w1"}, "127.0.0.1"), facts: w1, want: "127.0.0.1 is reserved"},
		{name: "another node's address", csr: servingCSR(t, "system:node:w1", "system:node:w1", org, []string{"w1"}, "10.5.0.6"), facts: w1, want: "an address of machine w2"},
		{name: "a control plane's address", csr: servingCSR(t, "system:node:w1", "system:node:w1", org, []string{"w1"}, "10.5.0.2"), facts: w1, want: "an address of machine cp1"},
		{name: "an address the kubelet reports but Ballast never verified", csr: servingCSR(t, "system:node:w1", "system:node:w1", org, []string{"w1"}, "10.5.0.9"),
			facts: known("w1", nodeWith("w1", "10.5.0.5", "10.5.0.9")), want: "not an address Ballast verified"},
		{name: "another node's name", csr: servingCSR(t, "system:node:w1", "system:node:w1", org, []string{"w2"}, "10.5.0.5"), facts: w1, want: `DNS name "w2"`},
		{name: "DNS only, no Node of that name", csr: servingCSR(t, "system:node:w1", "system:node:w1", org, []string{"w1"}), facts: known("w1", nil), want: "not yet"},
		{name: "no machine Ballast verified", csr: servingCSR(t, "system:node:w9", "system:node:w9", org, []string{"w9"}), facts: known("w9", nodeWith("w9", "10.5.0.9")), want: "not yet"},
		{name: "subject of another node", csr: servingCSR(t, "system:node:w1", "system:node:w2", org, []string{"w1"}), facts: w1, want: "is not system:node:w1"},
		{name: "not a node", csr: servingCSR(t, "alice", "system:node:w1", org, nil), facts: w1, want: "not by a node"},
		{name: "client usage", csr: servingCSR(t, "system:node:w1", "system:node:w1", org, []string{"w1"}), facts: w1, want: "not for serving",
			mutate: func(c *certificatesv1.CertificateSigningRequest) {
				c.Spec.Usages = append(c.Spec.Usages, certificatesv1.UsageClientAuth)
			}},
		{name: "garbage request", csr: servingCSR(t, "system:node:w1", "system:node:w1", org, nil), facts: w1, want: "not a PEM certificate request",
			mutate: func(c *certificatesv1.CertificateSigningRequest) { c.Spec.Request = []byte("junk") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mutate != nil {
				tc.mutate(tc.csr)
			}
			err := Check(tc.csr, tc.facts)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("denied: %v", err)
			case tc.want == "not yet" && !errors.Is(err, ErrNotYet):
				t.Fatalf("got %v, want to wait", err)
			case tc.want != "" && tc.want != "not yet" && (!errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want a denial with %q", err, tc.want)
			}
		})
	}
}

type fakeKube struct{ nodes map[string]*corev1.Node }

func (f fakeKube) WatchCSRs(context.Context, string) (kube.Store, <-chan struct{}) { return nil, nil }
func (f fakeKube) UpdateApproval(context.Context, *certificatesv1.CertificateSigningRequest) error {
	return nil
}
func (f fakeKube) Node(_ context.Context, name string) (*corev1.Node, error) {
	if n, ok := f.nodes[name]; ok {
		return n, nil
	}
	return nil, apierrors.NewNotFound(corev1.Resource("nodes"), name)
}

type fakeRegistry struct{ records []machines.Record }

func (f *fakeRegistry) Put(_ context.Context, r machines.Record) error {
	f.records = append(f.records, r)
	return nil
}
func (f *fakeRegistry) List(context.Context) ([]machines.Record, error) {
	return slices.Clone(f.records), nil
}
func (f *fakeRegistry) Delete(_ context.Context, name string) error {
	f.records = slices.DeleteFunc(f.records, func(r machines.Record) bool { return r.Name == name })
	return nil
}

// TestRelease: a worker's name is released when its Node was deleted or
// has not been Ready for ReleaseAfter, and only then; a control plane's
// record and a new record are never released.
func TestRelease(t *testing.T) {
	now := time.Unix(10_000_000, 0)
	old, recent := now.Add(-time.Hour), now.Add(-time.Minute)
	node := func(name string, ready corev1.ConditionStatus, since time.Time) *corev1.Node {
		n := nodeWith(name)
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, LastTransitionTime: metav1.NewTime(since)}}
		return n
	}
	reg := &fakeRegistry{records: []machines.Record{
		{Name: "ready", Role: machines.RoleWorker, Addresses: []string{"10.5.0.5"}, Updated: old},
		{Name: "deleted", Role: machines.RoleWorker, Addresses: []string{"10.5.0.6"}, Updated: old},
		{Name: "down-long", Role: machines.RoleWorker, Addresses: []string{"10.5.0.7"}, Updated: old},
		{Name: "down-briefly", Role: machines.RoleWorker, Addresses: []string{"10.5.0.8"}, Updated: old},
		{Name: "new", Role: machines.RoleWorker, Addresses: []string{"10.5.0.9"}, Updated: recent},
		{Name: "cp1", Role: machines.RoleControlPlane, Addresses: []string{"10.5.0.2"}, Updated: old},
	}}
	a := &Approver{
		Kube: fakeKube{nodes: map[string]*corev1.Node{
			"ready":        node("ready", corev1.ConditionTrue, old),
			"down-long":    node("down-long", corev1.ConditionUnknown, now.Add(-ReleaseAfter)),
			"down-briefly": node("down-briefly", corev1.ConditionFalse, now.Add(-ReleaseAfter/2)),
		}},
		Registry: reg,
		Clock:    clock.NewFake(now),
	}
	if err := a.release(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, r := range reg.records {
		kept = append(kept, r.Name)
	}
	if want := []string{"ready", "down-briefly", "new", "cp1"}; !slices.Equal(kept, want) {
		t.Fatalf("kept %v, want %v", kept, want)
	}
}
