package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate/csr"

	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/kubeconfig"
)

// kubeletClientCurrent is the kubelet's client certificate and key, where
// its certificate manager looks for them (a link to a dated file).
const kubeletClientCurrent = "kubelet-client-current.pem"

// bootstrapKubelet does the kubelet's TLS bootstrap before the kubelet
// starts, unless it has credentials already: a client CSR for
// system:node:<name> sent with the bootstrap token, approved by the
// controller-manager, written where the kubelet's certificate manager keeps
// it (which then rotates it). The kubelet would do the same itself, but
// meanwhile it runs its informers unauthenticated and backs them off for up
// to 30 s, which delays the node's first pods by as much.
func (n *Node) bootstrapKubelet(ctx context.Context, kn k8s.KubeletNode, p k8s.KubeletPaths, out io.Writer) error {
	if _, err := clientcmd.BuildConfigFromFlags("", p.Kubeconfig()); err == nil {
		return nil // the kubeconfig and the certificate it names are there
	}
	rc, err := clientcmd.BuildConfigFromFlags("", p.BootstrapKubeconfig())
	if err != nil {
		return fmt.Errorf("bootstrap kubeconfig: %w", err)
	}
	rc.Timeout = 10 * time.Second
	rc.UserAgent = "ballast-machined/kubelet-bootstrap"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	req, err := cert.MakeCSR(key, &pkix.Name{CommonName: "system:node:" + kn.Name, Organization: []string{"system:nodes"}}, nil, nil)
	if err != nil {
		return err
	}
	start := time.Now()
	var crt []byte
	// Until a control plane has published the bootstrap token, the API
	// refuses it: ask again.
	err = pollUntil(ctx, n.clock, time.Second, func(ctx context.Context) error {
		name, uid, err := csr.RequestCertificateWithContext(ctx, cs, req, "", certificatesv1.KubeAPIServerClientKubeletSignerName, nil,
			[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}, key)
		if err != nil {
			return fmt.Errorf("request a client certificate: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		crt, err = csr.WaitForCertificate(wctx, cs, name, uid)
		if err != nil {
			return fmt.Errorf("wait for client certificate %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	dir := p.CertDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	pair := append(append([]byte(nil), crt...), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...)
	dated := filepath.Join(dir, "kubelet-client-"+time.Now().UTC().Format("2006-01-02-15-04-05")+".pem")
	if err := atomicfile.Write(dated, pair, 0o600); err != nil {
		return err
	}
	current := filepath.Join(dir, kubeletClientCurrent)
	tmp := current + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(dated, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, current); err != nil {
		return err
	}
	ca, err := os.ReadFile(p.CA())
	if err != nil {
		return err
	}
	kc, err := kubeconfig.NewFiles("default-cluster", kn.LocalEndpoint, ca, current, current, "default-auth")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(p.Kubeconfig(), kc, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(out, "client certificate for system:node:%s issued in %s (TLS bootstrap with the cluster token)\n", kn.Name, time.Since(start).Round(time.Millisecond))
	return nil
}
