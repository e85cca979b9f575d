package node

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/kubeconfig"
	"github.com/ballast-os/ballast/pkg/pki"
)

// AdminUser is the user name of kubeconfigs from Kubeconfig.
const AdminUser = "admin"

// Kubeconfig implements server.Machine: a kubeconfig for the cluster's
// endpoint with a new client certificate in group system:masters, valid for
// the configured certificate lifetime.
func (n *Node) Kubeconfig(context.Context) (*machine.KubeconfigResponse, error) {
	cfg := n.desired.Current()
	if cfg == nil || !cfg.IsControlPlane() {
		return nil, fmt.Errorf("%w: kubeconfigs are issued by control-plane nodes", errdefs.ErrFailedPrecondition)
	}
	if !n.opts.Kubernetes {
		return nil, fmt.Errorf("%w: this node does not run Kubernetes (machined --kubernetes=false)", errdefs.ErrFailedPrecondition)
	}
	if cfg.Cluster.CA == nil || cfg.Cluster.CA.Key == "" {
		return nil, fmt.Errorf("%w: cluster.ca has no key on this node", errdefs.ErrFailedPrecondition)
	}
	ca, err := pki.FromB64(cfg.Cluster.CA.Crt, cfg.Cluster.CA.Key)
	if err != nil {
		return nil, fmt.Errorf("cluster.ca: %w", err)
	}
	lifetime := cfg.Cluster.CertificateLifetime.Std()
	if lifetime == 0 {
		lifetime = config.DefaultCertificateLifetime.Std()
	}
	ck, err := pki.Issue(ca, pki.Request{CommonName: AdminUser, Organization: []string{"system:masters"}, Usage: pki.UsageClient, Validity: lifetime})
	if err != nil {
		return nil, err
	}
	cert, err := pki.ParseCert(ck.Crt)
	if err != nil {
		return nil, err
	}
	server := cfg.Cluster.ControlPlane.Endpoint
	kc, err := kubeconfig.New(cfg.Cluster.Name, server, ca.Crt, ck.Crt, ck.Key, AdminUser)
	if err != nil {
		return nil, err
	}
	n.log.Info("admin kubeconfig issued", "expires", cert.NotAfter.Format(time.RFC3339), "serial", cert.SerialNumber.String())
	return &machine.KubeconfigResponse{Kubeconfig: kc, Server: server, Expires: timestamppb.New(cert.NotAfter)}, nil
}

// Containers implements server.Machine.
func (n *Node) Containers(ctx context.Context) (*machine.ContainersResponse, error) {
	n.mu.Lock()
	d := n.ctrd
	n.mu.Unlock()
	if d == nil {
		return nil, fmt.Errorf("%w: containerd does not run on this node (not configured yet, or machined --kubernetes=false)", errdefs.ErrFailedPrecondition)
	}
	cl, err := d.Client()
	if err != nil {
		return nil, err
	}
	ctx = namespaces.WithNamespace(ctx, runner.SystemNamespace)
	ctrs, err := cl.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: list containers: %v", errdefs.ErrUnavailable, err)
	}
	resp := &machine.ContainersResponse{}
	for _, c := range ctrs {
		info, err := c.Info(ctx)
		if err != nil {
			continue
		}
		mc := &machine.Container{Namespace: runner.SystemNamespace, Id: c.ID(), Image: info.Image, Status: "no task", Created: timestamppb.New(info.CreatedAt)}
		if task, err := c.Task(ctx, nil); err == nil {
			mc.Pid = task.Pid()
			if st, err := task.Status(ctx); err == nil {
				mc.Status = string(st.Status)
			}
		}
		resp.Containers = append(resp.Containers, mc)
	}
	sort.Slice(resp.Containers, func(i, j int) bool { return resp.Containers[i].Id < resp.Containers[j].Id })
	return resp, nil
}
