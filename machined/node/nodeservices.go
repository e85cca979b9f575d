package node

import (
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/config"
)

// This file wires the services of a Kubernetes node: the kubelet and the pod
// network on every node; on control planes the bootstrap manifests and the
// kubelet-serving approver.

// nodeSpecs are the kubelet, the pod network and, on control planes, the
// controllers machined runs against the cluster: the bootstrap manifests
// and the kubelet serving-certificate approver.
func (n *Node) nodeSpecs(cfg *config.Config) []supervisor.Spec {
	specs := []supervisor.Spec{n.kubeletSpec(cfg), {
		ID:          podNetworkService,
		Description: "pod network: CNI config for the node's pod CIDR, routes to the other nodes' pod CIDRs",
		DependsOn:   []string{kubeletService},
		Runner:      runner.Goroutine(podNetworkService, n.runPodNetwork),
		Restart:     supervisor.Always,
	}}
	if !cfg.IsControlPlane() {
		return specs
	}
	throughLB := n.apiserverThroughLB()
	return append(specs, supervisor.Spec{
		ID:          manifestsService,
		Description: "applies the cluster's bootstrap manifests (TLS bootstrap RBAC, kube-proxy, CoreDNS) and labels the control plane's Node",
		DependsOn:   []string{lbService, k8sCertsService},
		Conditions:  []supervisor.Condition{throughLB},
		Runner:      runner.Goroutine(manifestsService, n.runManifests),
		Restart:     supervisor.Always,
	}, supervisor.Spec{
		ID:          csrApproverService,
		Description: "approves kubelet serving certificates after checking the node's name and addresses",
		DependsOn:   []string{lbService, k8sCertsService},
		Conditions:  []supervisor.Condition{throughLB},
		Runner:      runner.Goroutine(csrApproverService, n.runCSRApprover),
		Restart:     supervisor.Always,
	})
}
