// Package csrapprover is the controller that decides the kubelets'
// serving-certificate requests (signer kubernetes.io/kubelet-serving): it
// approves a request only for the requester's own Node name and the
// addresses Ballast verified for its machine (the machine registry in
// etcd), and denies anything else with the reason as the CSR's condition.
// It also keeps this control plane's own machine record current, so the
// registry knows every control plane whether or not it ever signed a
// worker's certificate.
package csrapprover

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/kube"
	"github.com/ballast-os/ballast/machined/machines"
)

// Service is the approver's name as a supervised service.
const Service = "kubelet-serving-approver"

// Recheck is how often the approver reconciles without a change to any
// CSR: undecided CSRs are judged again and this control plane's machine
// record is asserted again.
const Recheck = 5 * time.Second

// Grace is how long a CSR whose Node or machine record is missing waits
// (the kubelet asks as it registers; a control plane records itself at
// start) before it is denied.
const Grace = 30 * time.Second

// ErrNotYet marks a CSR that cannot be judged yet: it is looked at again
// until Grace has passed, then denied with the reason.
var ErrNotYet = errors.New("not yet decidable")

// ErrDenied wraps every reason to deny.
var ErrDenied = errors.New("kubelet serving certificate refused")

// Facts is what Ballast knows about the requester of a serving CSR.
type Facts struct {
	// Node is the requester's Node (nil: none).
	Node *corev1.Node
	// Machine is the requester's record in the machine registry (nil:
	// Ballast never verified a machine of that name).
	Machine *machines.Record
	// Machines are every record, to refuse another machine's address.
	Machines []machines.Record
	// Reserved are the cluster's own names and addresses.
	Reserved machines.Reserved
}

// Kube is what the approver reads and writes in the Kubernetes API.
type Kube interface {
	WatchCSRs(ctx context.Context, signer string) (kube.Store, <-chan struct{})
	Node(ctx context.Context, name string) (*corev1.Node, error)
	UpdateApproval(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error
}

// Registry is the machine registry (machines.Put, List and Delete on the
// node's etcd client).
type Registry interface {
	Put(ctx context.Context, r machines.Record) error
	List(ctx context.Context) ([]machines.Record, error)
	Delete(ctx context.Context, name string) error
}

// ReleaseAfter is how long a worker's name stays bound to its machine
// (certsigner refuses it to any other) after its Node was deleted or
// stopped being Ready, and the least age of a record to be released.
const ReleaseAfter = 10 * time.Minute

// releaseCheck is how often the approver looks for names to release.
const releaseCheck = 30 * time.Second

// Self says who this control plane is now: its machine record and the
// cluster's reserved names and addresses (machines.ClusterReserved), from
// the current machine config.
type Self func() (machines.Record, machines.Reserved, error)

// Approver is the controller.
type Approver struct {
	Kube     Kube
	Registry Registry
	Self     Self
	Clock    clock.Clock
	// Log receives every denial and release (besides the service's
	// output).
	Log *slog.Logger

	lastRelease time.Time
}

// Run reconciles on every CSR change and every Recheck until ctx ends.
func (a *Approver) Run(ctx context.Context, out io.Writer) error {
	store, kick := a.Kube.WatchCSRs(ctx, certificatesv1.KubeletServingSignerName)
	for {
		if err := a.reconcile(ctx, store, out); err != nil && ctx.Err() == nil {
			fmt.Fprintf(out, "csr: %v\n", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-a.Clock.After(Recheck):
		}
	}
}

// reconcile records this control plane and decides the undecided CSRs.
func (a *Approver) reconcile(ctx context.Context, store kube.Store, out io.Writer) error {
	self, reserved, err := a.Self()
	if err != nil {
		return err
	}
	ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.Registry.Put(ectx, self); err != nil {
		return err
	}
	if now := a.Clock.Now(); now.Sub(a.lastRelease) >= releaseCheck {
		// Releasing names is not worth holding up a CSR decision: a
		// failed pass is said and tried again at the next check.
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := a.release(rctx, out); err != nil {
			fmt.Fprintf(out, "release machine names: %v\n", err)
		}
		cancel()
		a.lastRelease = now
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
	records, err := a.Registry.List(ectx)
	if err != nil {
		return err
	}
	for _, csr := range pending {
		facts := Facts{Machines: records, Reserved: reserved}
		name := strings.TrimPrefix(csr.Spec.Username, "system:node:")
		for i := range records {
			if records[i].Name == name {
				facts.Machine = &records[i]
			}
		}
		if node, err := a.Kube.Node(ctx, name); err == nil {
			facts.Node = node
		} else if !apierrors.IsNotFound(err) {
			return fmt.Errorf("read node %s: %w", name, err)
		}
		verdict := Check(csr, facts)
		if errors.Is(verdict, ErrNotYet) {
			if a.Clock.Now().Sub(csr.CreationTimestamp.Time) < Grace {
				continue
			}
			verdict = fmt.Errorf("%w: %w", ErrDenied, verdict)
		}
		if err := a.decide(ctx, csr, verdict, out); err != nil {
			return err
		}
	}
	return nil
}

// release forgets the registry's worker records whose machine is gone
// from the cluster: no Node of that name, or a Node not Ready, for
// ReleaseAfter. Their names are then free for another machine
// (certsigner); a record's own machine claims it again when it returns.
func (a *Approver) release(ctx context.Context, out io.Writer) error {
	records, err := a.Registry.List(ctx)
	if err != nil {
		return err
	}
	now := a.Clock.Now()
	for _, r := range records {
		if r.Role != machines.RoleWorker || now.Sub(r.Updated) < ReleaseAfter {
			continue
		}
		node, err := a.Kube.Node(ctx, r.Name)
		why := ""
		switch {
		case apierrors.IsNotFound(err):
			why = "its Node was deleted"
		case err != nil:
			return fmt.Errorf("read node %s: %w", r.Name, err)
		default:
			if since, ok := notReadySince(node); ok && now.Sub(since) >= ReleaseAfter {
				why = "its Node has not been Ready since " + since.UTC().Format(time.RFC3339)
			}
		}
		if why == "" {
			continue
		}
		if err := a.Registry.Delete(ctx, r.Name); err != nil {
			return err
		}
		if a.Log != nil {
			a.Log.Info("machine name released", "name", r.Name, "addresses", strings.Join(r.Addresses, ","), "reason", why)
		}
		fmt.Fprintf(out, "released the name %s (machine at %s): %s\n", r.Name, strings.Join(r.Addresses, ", "), why)
	}
	return nil
}

// notReadySince is when node's Ready condition last left True (false:
// the node is Ready, or reports no Ready condition).
func notReadySince(node *corev1.Node) (time.Time, bool) {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.LastTransitionTime.Time, c.Status != corev1.ConditionTrue
		}
	}
	return time.Time{}, false
}

// decide approves csr (verdict nil) or denies it with the verdict as
// reason, logged and kept as the CSR's condition.
func (a *Approver) decide(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, verdict error, out io.Writer) error {
	cond := certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
		Reason: "BallastApproved", Message: "node name and addresses verified by Ballast",
		LastUpdateTime: metav1.NewTime(a.Clock.Now()),
	}
	if verdict != nil {
		cond.Type, cond.Reason, cond.Message = certificatesv1.CertificateDenied, "BallastDenied", verdict.Error()
	}
	csr.Status.Conditions = append(csr.Status.Conditions, cond)
	switch err := a.Kube.UpdateApproval(ctx, csr); {
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		return nil // another control plane decided first
	case err != nil:
		return fmt.Errorf("%s %s: %w", strings.ToLower(string(cond.Type)), csr.Name, err)
	}
	if verdict != nil && a.Log != nil {
		a.Log.Warn("kubelet serving certificate denied", "csr", csr.Name, "requester", csr.Spec.Username, "reason", verdict.Error())
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

// Check returns nil when csr may be approved, ErrNotYet when
// the requester's Node or machine record is missing, else why it must be
// denied (wrapping ErrDenied). The requester must be system:node:N for a
// Node N whose machine Ballast verified; the certificate may name N and
// the addresses the registry holds for N — not a reserved name or address
// (kubernetes*, the endpoint, a VIP, a Service or pod address) and not
// another machine's address. What the kubelet reports in its Node status is
// never trusted.
func Check(csr *certificatesv1.CertificateSigningRequest, f Facts) error {
	deny := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrDenied, fmt.Sprintf(format, a...))
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
	if f.Reserved.Name(strings.ToLower(name)) {
		return deny("node name %q is reserved for the cluster", name)
	}
	if f.Machine == nil {
		return fmt.Errorf("%w: Ballast has verified no machine named %q", ErrNotYet, name)
	}
	if f.Node == nil {
		return fmt.Errorf("%w: no Node %q", ErrNotYet, name)
	}
	for _, d := range req.DNSNames {
		if !strings.EqualFold(d, name) {
			return deny("DNS name %q is not the node's name %q", d, name)
		}
	}
	for _, ip := range req.IPAddresses {
		if ip.IsLoopback() || f.Reserved.IP(ip) {
			return deny("IP address %s is reserved for the cluster (endpoint, VIP, control plane, Service or pod range)", ip)
		}
		for _, m := range f.Machines {
			if m.Name != name && slices.ContainsFunc(m.Addresses, func(a string) bool { return net.ParseIP(a).Equal(ip) }) {
				return deny("IP address %s is an address of machine %s", ip, m.Name)
			}
		}
		if !slices.ContainsFunc(f.Machine.Addresses, func(a string) bool { return net.ParseIP(a).Equal(ip) }) {
			return deny("IP address %s is not an address Ballast verified for %s (%s)", ip, name, strings.Join(f.Machine.Addresses, ", "))
		}
	}
	return nil
}
