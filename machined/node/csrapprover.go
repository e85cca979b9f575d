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
	"k8s.io/client-go/tools/cache"

	"github.com/ballast-os/ballast/machined/machines"
	"github.com/ballast-os/ballast/pkg/config"
)

// csrApproverService approves kubelet serving certificates.
const csrApproverService = "kubelet-serving-approver"

// csrRecheck is how often the approver reconciles without a change to any
// CSR: undecided CSRs are judged again and this control plane's machine
// record is asserted again.
const csrRecheck = 5 * time.Second

// csrGrace is how long a CSR whose Node or machine record is missing waits
// (the kubelet asks as it registers; a control plane records itself at
// start) before it is denied.
const csrGrace = 30 * time.Second

// errCSRNotYet marks a CSR that cannot be judged yet: it is looked at again
// until csrGrace has passed, then denied with the reason.
var errCSRNotYet = errors.New("not yet decidable")

// errCSRDenied wraps every reason to deny.
var errCSRDenied = errors.New("kubelet serving certificate refused")

// servingFacts is what Ballast knows about the requester of a serving CSR.
type servingFacts struct {
	// node is the requester's Node (nil: none).
	node *corev1.Node
	// machine is the requester's record in the machine registry (nil: Ballast
	// never verified a machine of that name).
	machine *machines.Record
	// machines are every record, to refuse another machine's address.
	machines []machines.Record
	// reserved are the cluster's own names and addresses.
	reserved reservedIdentity
}

// runCSRApprover approves the kubelets' serving-certificate requests
// (signer kubernetes.io/kubelet-serving) after checking them against the
// machine registry (checkServingCSR); anything else is denied with the
// reason as the CSR's condition. It also keeps this control plane's own
// machine record current. It reconciles on every CSR change and every
// csrRecheck.
func (n *Node) runCSRApprover(ctx context.Context, out io.Writer) error {
	cs, _, err := n.adminClients()
	if err != nil {
		return err
	}
	store, kick := watchResource(ctx, cs.CertificatesV1().RESTClient(), "certificatesigningrequests",
		fields.OneTermEqualSelector("spec.signerName", certificatesv1.KubeletServingSignerName), &certificatesv1.CertificateSigningRequest{})
	for {
		if err := n.reconcileCSRs(ctx, cs, store, out); err != nil && ctx.Err() == nil {
			fmt.Fprintf(out, "csr: %v\n", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-n.clock.After(csrRecheck):
		}
	}
}

// reconcileCSRs records this control plane and decides the undecided CSRs.
func (n *Node) reconcileCSRs(ctx context.Context, cs kubernetes.Interface, store cache.Store, out io.Writer) error {
	cfg := n.desired.Current()
	if cfg == nil {
		return errors.New("no machine config")
	}
	n.mu.Lock()
	mgr := n.etcdMgr
	n.mu.Unlock()
	if mgr == nil {
		return errors.New("no etcd member")
	}
	cli, err := mgr.LocalClient()
	if err != nil {
		return err
	}
	ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	self := n.selfRecord(cfg)
	if err := machines.Put(ectx, cli, self); err != nil {
		return err
	}
	var pending []*certificatesv1.CertificateSigningRequest
	for _, o := range store.List() {
		if csr := o.(*certificatesv1.CertificateSigningRequest); !decided(csr) {
			pending = append(pending, csr.DeepCopy()) // the informer's copy is shared
		}
	}
	if len(pending) == 0 {
		return nil
	}
	records, err := machines.List(ectx, cli)
	if err != nil {
		return err
	}
	reserved := clusterReserved(cfg)
	for _, csr := range pending {
		facts := servingFacts{machines: records, reserved: reserved}
		name := strings.TrimPrefix(csr.Spec.Username, "system:node:")
		for i := range records {
			if records[i].Name == name {
				facts.machine = &records[i]
			}
		}
		if node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err == nil {
			facts.node = node
		} else if !apierrors.IsNotFound(err) {
			return fmt.Errorf("read node %s: %w", name, err)
		}
		verdict := checkServingCSR(csr, facts)
		if errors.Is(verdict, errCSRNotYet) {
			if n.clock.Now().Sub(csr.CreationTimestamp.Time) < csrGrace {
				continue
			}
			verdict = fmt.Errorf("%w: %w", errCSRDenied, verdict)
		}
		if err := n.decideCSR(ctx, cs, csr, verdict, out); err != nil {
			return err
		}
	}
	return nil
}

// selfRecord is this control plane's machine record: its node name, its
// advertise address and its static addresses (never the VIP).
func (n *Node) selfRecord(cfg *config.Config) machines.Record {
	ip := n.advertiseIP(cfg)
	addrs := []string{ip}
	for _, iface := range cfg.Machine.Network.Interfaces {
		for _, a := range iface.Addresses {
			if s := strings.SplitN(a, "/", 2)[0]; !slices.Contains(addrs, s) {
				addrs = append(addrs, s)
			}
		}
	}
	return machines.Record{Name: n.nodeName(cfg), Role: machines.RoleControlPlane, Addresses: addrs, Updated: n.clock.Now().UTC()}
}

// decideCSR approves csr (verdict nil) or denies it with the verdict as
// reason, logged and kept as the CSR's condition.
func (n *Node) decideCSR(ctx context.Context, cs kubernetes.Interface, csr *certificatesv1.CertificateSigningRequest, verdict error, out io.Writer) error {
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
		return nil // another control plane decided first
	case err != nil:
		return fmt.Errorf("%s %s: %w", strings.ToLower(string(cond.Type)), csr.Name, err)
	}
	if verdict != nil {
		n.log.Warn("kubelet serving certificate denied", "csr", csr.Name, "requester", csr.Spec.Username, "reason", verdict.Error())
	}
	fmt.Fprintf(out, "%s %s for %s: %s\n", strings.ToLower(string(cond.Type)), csr.Name, csr.Spec.Username, cond.Message)
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
// the requester's Node or machine record is missing, else why it must be
// denied (wrapping errCSRDenied). The requester must be system:node:N for a
// Node N whose machine Ballast verified; the certificate may name N and
// the addresses the registry holds for N — not a reserved name or address
// (kubernetes*, the endpoint, a VIP, a Service or pod address) and not
// another machine's address. What the kubelet reports in its Node status is
// never trusted.
func checkServingCSR(csr *certificatesv1.CertificateSigningRequest, f servingFacts) error {
	deny := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", errCSRDenied, fmt.Sprintf(format, a...))
	}
	name, ok := strings.CutPrefix(csr.Spec.Username, "system:node:")
	if !ok || name == "" || !slices.Contains(csr.Spec.Groups, "system:nodes") {
		return deny("requested by %q, not by a node", csr.Spec.Username)
	}
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return deny("request is not a PEM certificate request")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return deny("parse request: %v", err)
	}
	if err := req.CheckSignature(); err != nil {
		return deny("request signature: %v", err)
	}
	if req.Subject.CommonName != csr.Spec.Username || !slices.Equal(req.Subject.Organization, []string{"system:nodes"}) {
		return deny("subject %q (organization %v) is not %s in system:nodes", req.Subject.CommonName, req.Subject.Organization, csr.Spec.Username)
	}
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		return deny("request names e-mail addresses or URIs")
	}
	for _, u := range csr.Spec.Usages {
		if !slices.Contains([]certificatesv1.KeyUsage{certificatesv1.UsageServerAuth, certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment}, u) {
			return deny("usage %q is not for serving", u)
		}
	}
	if !slices.Contains(csr.Spec.Usages, certificatesv1.UsageServerAuth) {
		return deny("no server auth usage")
	}
	if f.reserved.reservedName(strings.ToLower(name)) {
		return deny("node name %q is reserved for the cluster", name)
	}
	if f.machine == nil {
		return fmt.Errorf("%w: Ballast has verified no machine named %q", errCSRNotYet, name)
	}
	if f.node == nil {
		return fmt.Errorf("%w: no Node %q", errCSRNotYet, name)
	}
	for _, d := range req.DNSNames {
		if !strings.EqualFold(d, name) {
			return deny("DNS name %q is not the node's name %q", d, name)
		}
	}
	for _, ip := range req.IPAddresses {
		if ip.IsLoopback() || f.reserved.reservedIP(ip) {
			return deny("IP address %s is reserved for the cluster (endpoint, VIP, control plane, Service or pod range)", ip)
		}
		for _, m := range f.machines {
			if m.Name != name && slices.ContainsFunc(m.Addresses, func(a string) bool { return net.ParseIP(a).Equal(ip) }) {
				return deny("IP address %s is an address of machine %s", ip, m.Name)
			}
		}
		if !slices.ContainsFunc(f.machine.Addresses, func(a string) bool { return net.ParseIP(a).Equal(ip) }) {
			return deny("IP address %s is not an address Ballast verified for %s (%s)", ip, name, strings.Join(f.machine.Addresses, ", "))
		}
	}
	return nil
}
