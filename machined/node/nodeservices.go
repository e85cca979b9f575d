package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ballast-os/ballast/machined/csrapprover"
	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/machined/k8smanifests"
	"github.com/ballast-os/ballast/machined/kube"
	"github.com/ballast-os/ballast/machined/lb"
	"github.com/ballast-os/ballast/machined/podnetwork"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/config"
)

// This file wires the services of a Kubernetes node: the kubelet and the pod
// network on every node; on control planes the bootstrap manifests and the
// kubelet-serving approver. The controllers live in their own packages and
// get their inputs here.

// nodeSpecs are the kubelet, the pod network and, on control planes, the
// controllers machined runs against the cluster: the bootstrap manifests
// and the kubelet serving-certificate approver.
func (n *Node) nodeSpecs(cfg *config.Config) []supervisor.Spec {
	specs := []supervisor.Spec{n.kubeletSpec(cfg), {
		ID:          podnetwork.Service,
		Description: "pod network: CNI config for the node's pod CIDR, routes to the other nodes' pod CIDRs",
		DependsOn:   []string{kubeletService},
		Runner:      runner.Goroutine(podnetwork.Service, n.runPodNetwork),
		Restart:     supervisor.Always,
	}}
	if !cfg.IsControlPlane() {
		return specs
	}
	throughLB := n.apiserverThroughLB()
	return append(specs, supervisor.Spec{
		ID:          k8smanifests.Service,
		Description: "applies the cluster's bootstrap manifests (TLS bootstrap RBAC, kube-proxy, CoreDNS) and labels the control plane's Node",
		DependsOn:   []string{lbService, k8sCertsService},
		Conditions:  []supervisor.Condition{throughLB},
		Runner:      runner.Goroutine(k8smanifests.Service, n.runManifests),
		Restart:     supervisor.Always,
	}, supervisor.Spec{
		ID:          csrapprover.Service,
		Description: "approves kubelet serving certificates after checking the node's name and addresses",
		DependsOn:   []string{lbService, k8sCertsService},
		Conditions:  []supervisor.Condition{throughLB},
		Runner:      runner.Goroutine(csrapprover.Service, n.runCSRApprover),
		Restart:     supervisor.Always,
	})
}

// adminClient is machined's client on a control plane: its admin
// kubeconfig, through the node's load balancer.
func (n *Node) adminClient(agent string) (*kube.Client, error) {
	// Through the load balancer a request may land on an apiserver that
	// listens but is not ready yet: fail it quickly and retry rather than
	// hang. The bootstrap manifests are a burst of requests.
	return kube.New(n.k8sPaths().MachinedKubeconfig(), kube.Options{
		UserAgent: "ballast-machined/" + agent, Timeout: 10 * time.Second, QPS: 50, Burst: 100,
	})
}

func (n *Node) runManifests(ctx context.Context, out io.Writer) error {
	cl, err := n.adminClient(k8smanifests.Service)
	if err != nil {
		return err
	}
	c := &k8smanifests.Controller{Kube: cl, Clock: n.clock, Desired: func() (k8s.Manifests, string, <-chan struct{}, error) {
		cfg, changed := n.Config()
		if cfg == nil {
			return k8s.Manifests{}, "", nil, errors.New("no machine config")
		}
		m, err := k8s.RenderManifests(cfg, "https://"+lb.DefaultListen)
		return m, n.nodeName(cfg), changed, err
	}}
	return c.Run(ctx, out)
}

func (n *Node) runCSRApprover(ctx context.Context, out io.Writer) error {
	cl, err := n.adminClient(csrapprover.Service)
	if err != nil {
		return err
	}
	a := &csrapprover.Approver{Kube: cl, Registry: registry{n}, Self: n.approverSelf, Clock: n.clock, Log: n.log}
	return a.Run(ctx, out)
}

// runPodNetwork runs the pod-network controller with the kubelet's
// credentials, which exist once the kubelet has its client certificate
// (ensureKubeletClient; the kubelet may have rotated it since).
func (n *Node) runPodNetwork(ctx context.Context, out io.Writer) error {
	cfg := n.desired.Current()
	if cfg == nil {
		return errors.New("no machine config")
	}
	p := n.kubeletPaths()
	var cl *kube.Client
	if err := pollUntil(ctx, n.clock, 500*time.Millisecond, func(context.Context) error {
		var err error
		cl, err = kube.New(p.Kubeconfig(), kube.Options{UserAgent: "ballast-machined/" + podnetwork.Service})
		return err
	}); err != nil {
		return fmt.Errorf("kubelet kubeconfig: %w", err)
	}
	c := &podnetwork.Controller{Kube: cl, Node: n.nodeName(cfg), Paths: p, Clock: n.clock}
	return c.Run(ctx, out)
}
