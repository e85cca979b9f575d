package node

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/certsigner"
	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/kubeconfig"
	"github.com/ballast-os/ballast/pkg/pki"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// This file is the kubelet client certificate's home. There is no
// Kubernetes bootstrap token: a control plane signs its own kubelet's
// certificate with the cluster CA it holds, and a worker's kubelet
// certificate when the worker presents the machine token — for the hostname
// the signer checked (never a control plane's or a cluster-reserved name),
// recording the machine and the address the call came from in the machine
// registry. The kubelet renews the certificate itself (CSRs of the node for
// itself, approved by the controller-manager). See docs/security.md.

// Files of the kubelet's certificate directory.
const (
	// kubeletClientCurrent is the kubelet's client certificate and key,
	// where its certificate manager looks for them (a link to a dated file).
	kubeletClientCurrent = "kubelet-client-current.pem"
	// kubeletClientAddress is the address the machine registry holds for
	// a worker's certificate: a new address asks for a new certificate,
	// which records it.
	kubeletClientAddress = "kubelet-client-address"
)

// localEtcd is the client of this node's etcd member.
func (n *Node) localEtcd() (*clientv3.Client, error) {
	n.mu.Lock()
	mgr := n.etcdMgr
	n.mu.Unlock()
	if mgr == nil {
		return nil, errors.New("no etcd member on this node")
	}
	return mgr.LocalClient()
}

// ensureKubeletClient gives the kubelet a client certificate for its node
// name unless it has one that the cluster CA verifies, names the node, has
// more than a tenth of its life left and (on a worker) was recorded for the
// node's current address. A name change thus re-issues it, and drops the
// serving certificate of the old name.
func (n *Node) ensureKubeletClient(ctx context.Context, cfg *config.Config, kn k8s.KubeletNode, p k8s.KubeletPaths, out io.Writer) error {
	_ = os.Remove(p.BootstrapKubeconfig()) // an earlier version's token
	caPEM, err := k8s.ClusterCACert(cfg)
	if err != nil {
		return err
	}
	current := filepath.Join(p.CertDir(), kubeletClientCurrent)
	why := kubeletClientInvalid(current, p, caPEM, kn, cfg.IsControlPlane(), n.clock.Now())
	if why == "" {
		return nil
	}
	fmt.Fprintf(out, "kubelet client certificate needed: %s\n", why)
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		return err
	}
	start := n.clock.Now()
	var crt []byte
	if cfg.IsControlPlane() {
		ca, err := pki.FromB64(cfg.Cluster.CA.Crt, cfg.Cluster.CA.Key)
		if err != nil {
			return fmt.Errorf("cluster.ca: %w", err)
		}
		ck, err := pki.Issue(ca, certsigner.KubeletClientRequest(kn.Name, key.Public(), certsigner.CertificateLifetime(cfg)))
		if err != nil {
			return err
		}
		crt = ck.Crt
	} else {
		csrDER, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: kn.Name}}, key)
		if err != nil {
			return fmt.Errorf("create CSR: %w", err)
		}
		csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})
		machineCA, err := pki.DecodeB64(cfg.Machine.CA.Crt)
		if err != nil {
			return fmt.Errorf("machine.ca.crt: %w", err)
		}
		// Until a control plane runs etcd and Kubernetes it refuses: ask again.
		err = pollUntil(ctx, n.clock, 2*time.Second, func(ctx context.Context) error {
			var errs []error
			for _, addr := range controlPlaneHosts(cfg) {
				crt, err = callCertService(ctx, addr, net.ParseIP(kn.IP), machineCA, func(ctx context.Context, c machine.CertificateServiceClient) (*machine.SignNodeCertificateResponse, error) {
					return c.SignKubeletCertificate(ctx, &machine.SignNodeCertificateRequest{Csr: csrPEM, Token: cfg.Machine.Token})
				})
				if err == nil {
					return nil
				}
				errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			}
			return errors.Join(errs...)
		})
		if err != nil {
			return fmt.Errorf("kubelet client certificate: %w", err)
		}
	}
	if err := writeKubeletClient(p, kn, caPEM, crt, keyPEM, n.clock.Now()); err != nil {
		return err
	}
	fmt.Fprintf(out, "client certificate for system:node:%s issued in %s\n", kn.Name, n.clock.Now().Sub(start).Round(time.Millisecond))
	return nil
}

// kubeletClientInvalid says why the kubelet's current client certificate
// cannot be kept ("" when it can).
func kubeletClientInvalid(current string, p k8s.KubeletPaths, caPEM []byte, kn k8s.KubeletNode, controlPlane bool, now time.Time) string {
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
		if addr, _ := os.ReadFile(filepath.Join(p.CertDir(), kubeletClientAddress)); strings.TrimSpace(string(addr)) != kn.IP {
			return "the node's address is now " + kn.IP
		}
	}
	return ""
}

// writeKubeletClient stores a new client certificate where the kubelet's
// certificate manager keeps it, its kubeconfig, and the address it was
// recorded for; serving certificates of another name are dropped.
func writeKubeletClient(p k8s.KubeletPaths, kn k8s.KubeletNode, caPEM, crt, keyPEM []byte, now time.Time) error {
	dir := p.CertDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	dropServingCerts(dir, kn.Name)
	dated := filepath.Join(dir, "kubelet-client-"+now.UTC().Format("2006-01-02-15-04-05")+".pem")
	if err := atomicfile.Write(dated, append(append([]byte(nil), crt...), keyPEM...), 0o600); err != nil {
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
	kc, err := kubeconfig.NewFiles("default-cluster", kn.LocalEndpoint, caPEM, current, current, "default-auth")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(p.Kubeconfig(), kc, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, kubeletClientAddress), []byte(kn.IP+"\n"), 0o600)
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

// callCertService calls one RPC of a control plane's CertificateService,
// verifying it is a control plane of the OS CA caPEM, from source (the
// address the signer certifies).
func callCertService(ctx context.Context, addr string, source net.IP, caPEM []byte,
	call func(context.Context, machine.CertificateServiceClient) (*machine.SignNodeCertificateResponse, error)) ([]byte, error) {
	c, err := client.New(client.Options{Address: addr, CA: caPEM, ServerOnly: true, RequireControlPlane: true, SourceIP: source})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := call(cctx, machine.NewCertificateServiceClient(c.Conn()))
	if err != nil {
		return nil, err
	}
	if len(resp.GetCrt()) == 0 {
		return nil, errors.New("empty certificate")
	}
	return resp.GetCrt(), nil
}
