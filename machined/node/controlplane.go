package node

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/ballast-os/ballast/machined/controlplane"
	"github.com/ballast-os/ballast/machined/etcd"
	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/machined/k8scerts"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/images"
)

// k8sCertsService issues and renews the control plane's certificates.
const k8sCertsService = k8scerts.Service

// k8sDir is the node's Kubernetes directory (certificates, kubeconfigs).
func (n *Node) k8sPaths() k8s.Paths {
	return k8s.Paths{Dir: filepath.Join(n.store.EphemeralDir(), "lib", "kubernetes")}
}

// k8sNode is what the control plane's files depend on besides the config.
func (n *Node) k8sNode(cfg *config.Config) k8s.Node {
	return k8s.Node{
		Name:          n.nodeName(cfg),
		AdvertiseIP:   n.advertiseIP(cfg),
		LocalEndpoint: "https://" + n.lbAddr(),
		EtcdServer:    "https://" + net.JoinHostPort(n.advertiseIP(cfg), strconv.Itoa(etcd.ClientPort)),
	}
}

// controlPlaneSpecs are the certificate controller and the three
// components, as containers of the node's containerd.
func (n *Node) controlPlaneSpecs(cfg *config.Config) []supervisor.Spec {
	certsReady := make(chan struct{})
	var readyOnce sync.Once
	markReady := func() { readyOnce.Do(func() { close(certsReady) }) }
	waitCerts := supervisor.Condition{Name: "kubernetes certificates issued", Wait: func(ctx context.Context) error {
		return waitClosed(ctx, certsReady)
	}}
	specs := []supervisor.Spec{{
		ID:          k8sCertsService,
		Description: "Kubernetes certificates, kubeconfigs and encryption config, renewed when a third of their lifetime is left",
		Runner: runner.Goroutine(k8sCertsService, func(ctx context.Context, out io.Writer) error {
			return n.k8sCertsController().Run(ctx, out, markReady)
		}),
		Restart: supervisor.Always,
	}}
	probes := map[string]func(context.Context) error{
		images.APIServer:         k8s.APIServerProbe(n.k8sPaths()).Check,
		images.ControllerManager: k8s.LocalProbe(k8s.ControllerManagerPort).Check,
		images.Scheduler:         k8s.LocalProbe(k8s.SchedulerPort).Check,
	}
	// The apiserver is restarted when not alive (/livez), not when merely
	// not ready (/readyz fails without etcd quorum).
	liveness := map[string]func(context.Context) error{images.APIServer: k8s.APIServerLivenessProbe(n.k8sPaths()).Check}
	// The controller-manager and scheduler start once an apiserver answers
	// through the node's load balancer: started earlier, they exit and
	// back off, which cost seconds at cluster creation.
	throughLB := n.apiserverThroughLB()
	conds := func(name string) []supervisor.Condition {
		c := []supervisor.Condition{waitCerts, {Name: "component images imported", Wait: n.waitComponentImages}}
		if name != images.APIServer {
			c = append(c, throughLB)
		}
		return c
	}
	for _, name := range images.ControlPlaneComponents {
		deps := []string{containerdService, etcdService}
		if name != images.APIServer {
			deps = []string{containerdService, lbService}
		}
		specs = append(specs, supervisor.Spec{
			ID:          name,
			Description: name + " " + cfg.Cluster.KubernetesVersion + " (container in containerd namespace " + runner.SystemNamespace + ")",
			DependsOn:   deps,
			Conditions:  conds(name),
			Runner:      &controlplane.Component{Name: name, Inputs: n.componentInputs()},
			Restart:     supervisor.Always,
			// A component that fails 10 (liveness) probes in a row (≥ 20 s;
			// an apiserver starts in ~3 s) is restarted.
			Health: &supervisor.HealthCheck{Check: probes[name], Liveness: liveness[name], Interval: 2 * time.Second, Timeout: 5 * time.Second, FailureThreshold: 10},
		})
	}
	return specs
}

// k8sCertsController is the node's files controller (made once).
func (n *Node) k8sCertsController() *k8scerts.Controller {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.k8sCerts == nil {
		n.k8sCerts = &k8scerts.Controller{
			Paths:    n.k8sPaths(),
			Inputs:   k8scerts.Inputs{Config: n.Config, Node: n.k8sNode, Specs: n.componentSpecs},
			Services: n.sup,
			Lock:     k8scerts.EtcdLock(n.localEtcd),
			HandOff: func(ctx context.Context) {
				n.mu.Lock()
				v := n.vip
				n.mu.Unlock()
				if v != nil {
					v.Resign(ctx)
				}
			},
			Clock: n.clock,
		}
	}
	return n.k8sCerts
}

// apiserverThroughLB is the condition of what talks to the API from a
// control plane: an apiserver answers ready through the node's load
// balancer.
func (n *Node) apiserverThroughLB() supervisor.Condition {
	return supervisor.Condition{Name: "an apiserver ready through the load balancer", Wait: func(ctx context.Context) error {
		return pollUntil(ctx, n.clock, 250*time.Millisecond, k8s.APIServerProbeAt(n.k8sPaths(), n.lbAddr()).Check)
	}}
}

// componentInputs are what the components are made of, from the node.
func (n *Node) componentInputs() controlplane.Inputs {
	return controlplane.Inputs{
		Config: n.desired.Current,
		Node:   n.k8sNode,
		Paths:  n.k8sPaths(),
		Runtime: func() controlplane.Runtime {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.ctrd == nil {
				return nil
			}
			return n.ctrd
		},
	}
}

// componentSpecs fingerprints each component's image and flags.
func (n *Node) componentSpecs(cfg *config.Config) map[string]string {
	return controlplane.Fingerprints(cfg, n.k8sNode(cfg), n.k8sPaths())
}
