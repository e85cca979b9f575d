package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/pki"
	"github.com/ballast-os/ballast/pkg/secrets"
)

// testKubeletTrust plays an attacker who holds worker.yaml (the machine
// token) and, worse, a worker's kubelet key, against a running cluster: the
// machine token yields no kubelet identity of a control plane or of the
// apiserver's names; no bootstrap token authenticates; a node's serving
// CSRs for a name or address that is not its own are denied with the
// reason, and so is a DNS-only request of a name with no Node; the kubelets
// serve certificates of the kubelet-serving CA, which clients of the
// apiserver do not trust.
func testKubeletTrust(t *testing.T, c *localCluster, cp, w1, w2 clusterNode, endpoint string) {
	bundle, err := secrets.Load(filepath.Join(c.root, c.name, "secrets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	osCA, err := pki.DecodeB64(bundle.Certs.OS.Crt)
	if err != nil {
		t.Fatal(err)
	}
	k8sCA, err := pki.DecodeB64(bundle.Certs.Kubernetes.Crt)
	if err != nil {
		t.Fatal(err)
	}
	servingCA, err := pki.DecodeB64(bundle.Certs.KubeletServing.Crt)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	vip := u.Hostname()

	// kubeletCert asks cp for a kubelet client certificate with the
	// machine token, as a worker does.
	kubeletCert := func(cn string) (crt, key []byte, err error) {
		k, keyPEM, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := client.New(client.Options{Address: cp.Address, CA: osCA, ServerOnly: true, RequireControlPlane: true})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		resp, err := machine.NewCertificateServiceClient(cl.Conn()).SignKubeletCertificate(ctx, &machine.SignNodeCertificateRequest{
			Csr: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), Token: bundle.Secrets.MachineToken,
		})
		return resp.GetCrt(), keyPEM, err
	}

	t.Run("the machine token yields no kubelet identity of the cluster's names", func(t *testing.T) {
		for _, cn := range []string{"kubernetes.default.svc", "kubernetes", "kubernetes.default.svc.cluster.local", c.name + "-cp1", "localhost"} {
			_, _, err := kubeletCert(cn)
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("kubelet certificate for %s: %v, want PermissionDenied", cn, err)
			}
		}
	})

	t.Run("no bootstrap token authenticates", func(t *testing.T) {
		k := kubectl{t: t, kubeconfig: filepath.Join(c.root, "kubeconfig")}
		if out := k.must("get", "secrets", "-n", "kube-system", "--field-selector", "type=bootstrap.kubernetes.io/token", "-o", "name"); out != "" {
			t.Fatalf("bootstrap-token Secrets exist: %s", out)
		}
		// A well-formed token, as cluster.token used to be: refused.
		rc := &rest.Config{Host: endpoint, BearerToken: bundle.Secrets.MachineToken, TLSClientConfig: rest.TLSClientConfig{CAData: k8sCA}, Timeout: 10 * time.Second}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{}); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
			t.Fatalf("a bearer token in bootstrap-token form: %v, want Unauthorized", err)
		}
	})

	// w1's real kubelet identity, read from its disk as an attacker on the
	// node would.
	w1Pair, err := os.ReadFile(filepath.Join(w1.StateDir, "var", "lib", "kubelet", "pki", "kubelet-client-current.pem"))
	if err != nil {
		t.Fatal(err)
	}
	asNode := func(t *testing.T, pair []byte) *kubernetes.Clientset {
		rc := &rest.Config{Host: endpoint, TLSClientConfig: rest.TLSClientConfig{CAData: k8sCA, CertData: pair, KeyData: pair}, Timeout: 10 * time.Second}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	// request submits a serving CSR as the node of cs and waits for the
	// verdict: the condition type and its message.
	request := func(t *testing.T, cs *kubernetes.Clientset, node string, dns []string, ips ...string) (certificatesv1.RequestConditionType, string) {
		k, _, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}, DNSNames: dns}
		for _, ip := range ips {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
		}
		der, err := x509.CreateCertificateRequest(nil, tmpl, k)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		csr, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-serving-"},
			Spec: certificatesv1.CertificateSigningRequestSpec{
				Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
				SignerName: certificatesv1.KubeletServingSignerName,
				Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create CSR: %v", err)
		}
		var typ certificatesv1.RequestConditionType
		var msg string
		waitFor(t, "a verdict on "+csr.Name, 90*time.Second, func() error {
			got, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, csr.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range got.Status.Conditions {
				if c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied {
					typ, msg = c.Type, c.Message
					return nil
				}
			}
			return fmt.Errorf("undecided")
		})
		return typ, msg
	}

	t.Run("a node obtains a serving certificate only for its own name and address", func(t *testing.T) {
		cs := asNode(t, w1Pair)
		name := c.name + "-w1"
		for _, tc := range []struct {
			what string
			dns  []string
			ips  []string
			want string // "" approved, else part of the denial
		}{
			{"its own name and address (the control case)", []string{name}, []string{w1.Address}, ""},
			{"kubernetes.default.svc", []string{name, "kubernetes.default.svc"}, []string{w1.Address}, `DNS name "kubernetes.default.svc"`},
			{"the VIP", []string{name}, []string{vip}, "reserved"},
			{"another node's address", []string{name}, []string{w2.Address}, "an address of machine"},
			{"a control plane's address", []string{name}, []string{cp.Address}, "an address of machine"},
			{"the kubernetes Service address", []string{name}, []string{"10.96.0.1"}, "reserved"},
		} {
			typ, msg := request(t, cs, name, tc.dns, tc.ips...)
			switch {
			case tc.want == "" && typ != certificatesv1.CertificateApproved:
				t.Errorf("%s: %s (%s), want Approved", tc.what, typ, msg)
			case tc.want != "" && (typ != certificatesv1.CertificateDenied || !strings.Contains(msg, tc.want)):
				t.Errorf("%s: %s (%s), want Denied with %q", tc.what, typ, msg, tc.want)
			default:
				t.Logf("%s: %s %s", tc.what, typ, msg)
			}
		}
	})

	t.Run("a DNS-only request of a name with no Node is denied", func(t *testing.T) {
		// The machine token may join a new worker (that is what it is for),
		// but a name that never registered a Node gets no serving certificate.
		crt, key, err := kubeletCert("e2e-ghost")
		if err != nil {
			t.Fatalf("kubelet certificate for a new worker name: %v", err)
		}
		typ, msg := request(t, asNode(t, append(crt, key...)), "e2e-ghost", []string{"e2e-ghost"})
		if typ != certificatesv1.CertificateDenied || !strings.Contains(msg, `no Node "e2e-ghost"`) {
			t.Fatalf("%s (%s), want Denied for want of a Node", typ, msg)
		}
	})

	t.Run("the machine token can not take another worker's name", func(t *testing.T) {
		// Asked from the test's own address, not w1's, without w1's
		// certificates: the name stays w1's.
		_, _, err := kubeletCert(c.name + "-w1")
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "is the name of the machine at "+w1.Address) {
			t.Fatalf("kubelet certificate for %s-w1 from another address: %v, want PermissionDenied naming %s", c.name, err, w1.Address)
		}
	})

	t.Run("kubelets serve certificates of their own CA, which apiserver clients do not trust", func(t *testing.T) {
		conn, err := tls.Dial("tcp", net.JoinHostPort(w1.Address, "10250"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		for _, tc := range []struct {
			ca    []byte
			trust bool
		}{{servingCA, true}, {k8sCA, false}} {
			pool, err := pki.Pool(tc.ca)
			if err != nil {
				t.Fatal(err)
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if (err == nil) != tc.trust {
				t.Errorf("kubelet certificate %s verifies under %s: %v, want %v", leaf.Subject.CommonName, caName(tc.ca), err == nil, tc.trust)
			}
		}
	})
}

func caName(pemData []byte) string {
	c, err := pki.ParseCert(pemData)
	if err != nil {
		return "?"
	}
	return c.Subject.CommonName
}
