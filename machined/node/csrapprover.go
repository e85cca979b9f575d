package node

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// csrApproverService approves kubelet serving certificates.
const csrApproverService = "kubelet-serving-approver"

// csrRecheck is how often CSRs left undecided (their node has not reported
// addresses yet) are looked at again without a change to any CSR.
const csrRecheck = 5 * time.Second

// errCSRNotYet marks a CSR that cannot be judged yet (its Node has not
// reported addresses): it is looked at again later, not denied.
var errCSRNotYet = errors.New("node has not reported its addresses yet")

// runCSRApprover approves the kubelets' serving-certificate requests
// (signer kubernetes.io/kubelet-serving) after checking them: asked by the
// node itself, for its own name, for no address its Node does not report,
// and for server use only. Anything else is denied with the reason.
func (n *Node) runCSRApprover(ctx context.Context, out io.Writer) error {
	cs, _, err := n.adminClients()
	if err != nil {
		return err
	}
	store, kick := watchResource(ctx, cs.CertificatesV1().RESTClient(), "certificatesigningrequests",
		fields.OneTermEqualSelector("spec.signerName", certificatesv1.KubeletServingSignerName), &certificatesv1.CertificateSigningRequest{})
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-n.clock.After(csrRecheck):
		}
		if err := n.approvePending(ctx, cs, store.List(), out); err != nil && ctx.Err() == nil {
			fmt.Fprintf(out, "csr: %v\n", err)
		}
	}
}

// approvePending decides the undecided CSRs among objs (the informer's).
func (n *Node) approvePending(ctx context.Context, cs *kubernetes.Clientset, objs []any, out io.Writer) error {
	var nodes []corev1.Node
	for _, o := range objs {
		csr := o.(*certificatesv1.CertificateSigningRequest)
		if decided(csr) {
			continue
		}
		csr = csr.DeepCopy() // the informer's copy is shared
		if nodes == nil {
			nl, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return fmt.Errorf("list nodes: %w", err)
			}
			nodes = nl.Items
		}
		verdict := checkServingCSR(csr, nodes)
		if errors.Is(verdict, errCSRNotYet) {
			continue
		}
		cond := certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
			Reason: "BallastApproved", Message: "node name and addresses verified by Ballast",
			LastUpdateTime: metav1.Now(),
		}
		if verdict != nil {
			cond.Type, cond.Reason, cond.Message = certificatesv1.CertificateDenied, "BallastDenied", verdict.Error()
		}
		csr.Status.Conditions = append(csr.Status.Conditions, cond)
		_, err := cs.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{FieldManager: fieldManager})
		switch {
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			// Another control plane decided first.
		case err != nil:
			return fmt.Errorf("%s %s: %w", strings.ToLower(string(cond.Type)), csr.Name, err)
		default:
			fmt.Fprintf(out, "%s %s for %s: %s\n", strings.ToLower(string(cond.Type)), csr.Name, csr.Spec.Username, cond.Message)
		}
	}
	return nil
}

func decided(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
			return true
		}
	}
	return false
}

// checkServingCSR returns nil when csr may be approved, errCSRNotYet when
// its node has not reported addresses yet, else why it must be denied.
// nodes are the cluster's Nodes: an address must be the requester's and no
// other node's.
func checkServingCSR(csr *certificatesv1.CertificateSigningRequest, nodes []corev1.Node) error {
	name, ok := strings.CutPrefix(csr.Spec.Username, "system:node:")
	if !ok || name == "" || !slices.Contains(csr.Spec.Groups, "system:nodes") {
		return fmt.Errorf("requested by %q, not by a node", csr.Spec.Username)
	}
	var node *corev1.Node
	for i := range nodes {
		if nodes[i].Name == name {
			node = &nodes[i]
		}
	}
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return errors.New("request is not a PEM certificate request")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return fmt.Errorf("parse request: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return fmt.Errorf("request signature: %w", err)
	}
	if req.Subject.CommonName != csr.Spec.Username || !slices.Equal(req.Subject.Organization, []string{"system:nodes"}) {
		return fmt.Errorf("subject %q (organization %v) is not %s in system:nodes", req.Subject.CommonName, req.Subject.Organization, csr.Spec.Username)
	}
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		return errors.New("request names e-mail addresses or URIs")
	}
	for _, u := range csr.Spec.Usages {
		if !slices.Contains([]certificatesv1.KeyUsage{certificatesv1.UsageServerAuth, certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment}, u) {
			return fmt.Errorf("usage %q is not for serving", u)
		}
	}
	if !slices.Contains(csr.Spec.Usages, certificatesv1.UsageServerAuth) {
		return errors.New("no server auth usage")
	}
	for _, d := range req.DNSNames {
		if d != name {
			return fmt.Errorf("DNS name %q is not the node's name %q", d, name)
		}
	}
	if len(req.IPAddresses) == 0 {
		return nil
	}
	if node == nil || len(node.Status.Addresses) == 0 {
		return errCSRNotYet
	}
	for _, ip := range req.IPAddresses {
		if !hasAddress(node, ip) {
			return fmt.Errorf("IP address %s is not an address of node %s", ip, name)
		}
		for i := range nodes {
			if nodes[i].Name != name && hasAddress(&nodes[i], ip) {
				return fmt.Errorf("IP address %s is also an address of node %s", ip, nodes[i].Name)
			}
		}
	}
	return nil
}

func hasAddress(node *corev1.Node, ip net.IP) bool {
	return slices.ContainsFunc(node.Status.Addresses, func(a corev1.NodeAddress) bool {
		return (a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP) && net.ParseIP(a.Address).Equal(ip)
	})
}
