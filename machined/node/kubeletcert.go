package node

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/certsigner"
	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/machined/kubelet"
	"github.com/ballast-os/ballast/machined/nodecert"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/pki"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// This file signs the kubelet's client certificate for kubelet.ClientCert
// (there is no Kubernetes bootstrap token) and calls a control plane's
// CertificateService for a worker. See docs/security.md.

// kubeletClientCert keeps the kubelet's client certificate
// (kubelet.ClientCert), signed by signKubeletClient.
func (n *Node) kubeletClientCert() *kubelet.ClientCert {
	return &kubelet.ClientCert{Paths: n.kubeletPaths(), Sign: n.signKubeletClient, Clock: n.clock}
}

// signKubeletClient gets the kubelet a client certificate: a control plane
// signs it with the cluster CA it holds; a worker asks the control planes
// with the machine token (certsigner.Signer.SignKubelet), again until one
// runs etcd and Kubernetes.
func (n *Node) signKubeletClient(ctx context.Context, cfg *config.Config, kn k8s.KubeletNode, key crypto.Signer) ([]byte, error) {
	if cfg.IsControlPlane() {
		ca, err := pki.FromB64(cfg.Cluster.CA.Crt, cfg.Cluster.CA.Key)
		if err != nil {
			return nil, fmt.Errorf("cluster.ca: %w", err)
		}
		ck, err := pki.Issue(ca, certsigner.KubeletClientRequest(kn.Name, key.Public(), certsigner.CertificateLifetime(cfg)))
		if err != nil {
			return nil, err
		}
		return ck.Crt, nil
	}
	csrDER, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: kn.Name}}, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})
	machineCA, err := pki.DecodeB64(cfg.Machine.CA.Crt)
	if err != nil {
		return nil, fmt.Errorf("machine.ca.crt: %w", err)
	}
	var crt []byte
	err = pollUntil(ctx, n.clock, 2*time.Second, func(ctx context.Context) error {
		var errs []error
		for _, addr := range nodecert.ControlPlaneHosts(cfg) {
			crt, err = nodecert.Ask(ctx, addr, net.ParseIP(kn.IP), machineCA, n.workerProof(), func(ctx context.Context, c machine.CertificateServiceClient) (*machine.SignNodeCertificateResponse, error) {
				return c.SignKubeletCertificate(ctx, &machine.SignNodeCertificateRequest{Csr: csrPEM, Token: cfg.Machine.Token})
			})
			if err == nil {
				return nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
		return errors.Join(errs...)
	})
	return crt, err
}

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
