package kubelet

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/kubeconfig"
	"github.com/ballast-os/ballast/pkg/pki"
)

// This file is the kubelet client certificate's home on the node. There is
// no Kubernetes bootstrap token: a control plane signs its own kubelet's
// certificate with the cluster CA it holds, a worker asks a control plane
// (certsigner), and the kubelet renews it itself afterwards (CSRs of the
// node for itself, approved by the controller-manager). See
// docs/security.md.

// Files of the kubelet's certificate directory.
const (
	// clientAddress is the address the machine registry holds for
	// a worker's certificate: a new address asks for a new certificate,
	// which records it.
	clientAddress = "kubelet-client-address"
)

// ClientCert keeps the kubelet's client certificate.
type ClientCert struct {
	Paths k8s.KubeletPaths
	// Sign returns a client certificate (PEM) for system:node:<kn.Name>
	// with key's public key: signed here on a control plane, asked of one
	// by a worker.
	Sign  func(ctx context.Context, cfg *config.Config, kn k8s.KubeletNode, key crypto.Signer) ([]byte, error)
	Clock clock.Clock
}

// Ensure gives the kubelet a client certificate for its node
// name unless it has one that the cluster CA verifies, names the node, has
// more than a tenth of its life left and (on a worker) was recorded for the
// node's current address. A name change thus re-issues it, and drops the
// serving certificate of the old name.
func (c *ClientCert) Ensure(ctx context.Context, cfg *config.Config, kn k8s.KubeletNode, out io.Writer) error {
	p := c.Paths
	_ = os.Remove(p.BootstrapKubeconfig()) // an earlier version's token
	caPEM, err := k8s.ClusterCACert(cfg)
	if err != nil {
		return err
	}
	current := p.ClientCert()
	why := clientCertInvalid(current, p, caPEM, kn, cfg.IsControlPlane(), c.Clock.Now())
	if why == "" {
		return nil
	}
	fmt.Fprintf(out, "kubelet client certificate needed: %s\n", why)
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		return err
	}
	start := c.Clock.Now()
	crt, err := c.Sign(ctx, cfg, kn, key)
	if err != nil {
		return fmt.Errorf("kubelet client certificate: %w", err)
	}
	if err := writeClientCert(p, kn, caPEM, crt, keyPEM, c.Clock.Now()); err != nil {
		return err
	}
	fmt.Fprintf(out, "client certificate for system:node:%s issued in %s\n", kn.Name, c.Clock.Now().Sub(start).Round(time.Millisecond))
	return nil
}

// clientCertInvalid says why the kubelet's current client certificate
// cannot be kept ("" when it can).
func clientCertInvalid(current string, p k8s.KubeletPaths, caPEM []byte, kn k8s.KubeletNode, controlPlane bool, now time.Time) string {
	data, err := os.ReadFile(current)
	if err != nil {
		return "none yet"
	}
	if _, err := os.Stat(p.Kubeconfig()); err != nil {
		return "no kubeconfig"
	}
	cert, err := pki.ParseCert(data)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	if want := "system:node:" + kn.Name; cert.Subject.CommonName != want {
		return fmt.Sprintf("it names %s, the node is now %s", cert.Subject.CommonName, want)
	}
	pool, err := pki.Pool(caPEM)
	if err != nil {
		return err.Error()
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "not valid under the cluster CA: " + err.Error()
	}
	if left := cert.NotAfter.Sub(now); left < cert.NotAfter.Sub(cert.NotBefore)/10 {
		return "expires at " + cert.NotAfter.UTC().Format(time.RFC3339)
	}
	if !controlPlane {
		if addr, _ := os.ReadFile(filepath.Join(p.CertDir(), clientAddress)); strings.TrimSpace(string(addr)) != kn.IP {
			return "the node's address is now " + kn.IP
		}
	}
	return ""
}

// writeClientCert stores a new client certificate where the kubelet's
// certificate manager keeps it, its kubeconfig, and the address it was
// recorded for; serving certificates of another name are dropped.
func writeClientCert(p k8s.KubeletPaths, kn k8s.KubeletNode, caPEM, crt, keyPEM []byte, now time.Time) error {
	dir := p.CertDir()
	for _, d := range []string{dir, filepath.Dir(p.Kubeconfig())} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	dropServingCerts(dir, kn.Name)
	dated := filepath.Join(dir, "kubelet-client-"+now.UTC().Format("2006-01-02-15-04-05")+".pem")
	if err := atomicfile.Write(dated, append(append([]byte(nil), crt...), keyPEM...), 0o600); err != nil {
		return err
	}
	current := p.ClientCert()
	tmp := current + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(dated, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, current); err != nil {
		return err
	}
	kc, err := kubeconfig.NewFiles("default-cluster", kn.LocalEndpoint, caPEM, current, current, "default-auth")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(p.Kubeconfig(), kc, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, clientAddress), []byte(kn.IP+"\n"), 0o600)
}

// dropServingCerts removes the kubelet's serving certificate when it names
// another node: the kubelet asks for one of its new name.
func dropServingCerts(dir, name string) {
	data, err := os.ReadFile(filepath.Join(dir, "kubelet-server-current.pem"))
	if err != nil {
		return
	}
	if cert, err := pki.ParseCert(data); err == nil && cert.Subject.CommonName == "system:node:"+name {
		return
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "kubelet-server-*.pem"))
	for _, m := range matches {
		_ = os.Remove(m)
	}
}
