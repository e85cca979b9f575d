package node

import (
	"context"
	"io"
	"time"

	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/machined/kubelet"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/config"
)

// kubeletService is the node's kubelet.
const kubeletService = kubelet.Service

func (n *Node) kubeletPaths() k8s.KubeletPaths { return k8s.NewKubeletPaths(n.store.EphemeralDir()) }

// kubeletNode is what the kubelet's files depend on besides the config.
func (n *Node) kubeletNode(cfg *config.Config) k8s.KubeletNode {
	n.mu.Lock()
	d := n.ctrd
	n.mu.Unlock()
	name := n.nodeName(cfg)
	// In container mode the node's pods live under a cgroup of its own; on
	// metal the machine is the node and the kubelet takes the root.
	cgroupRoot := "/ballast/" + name
	if n.opts.Mode == ModeMetal {
		cgroupRoot = "/"
	}
	return k8s.KubeletNode{
		Name:          name,
		IP:            n.advertiseIP(cfg),
		LocalEndpoint: "https://" + n.lbAddr(),
		CRISocket:     d.Socket(),
		CgroupRoot:    cgroupRoot,
		CgroupV1:      kubelet.CgroupV1Host(),
	}
}

// kubeletSpec is the kubelet, a process of the node, started once the
// images are imported (the pause image must be there).
func (n *Node) kubeletSpec(cfg *config.Config) supervisor.Spec {
	return supervisor.Spec{
		ID:          kubeletService,
		Description: "kubelet " + cfg.KubeletVersion() + " (CRI: the node's containerd)",
		DependsOn:   []string{containerdService, lbService},
		Conditions:  []supervisor.Condition{{Name: "images imported", Wait: n.waitImages}},
		Runner:      n.kubeletRunner(),
		Restart:     supervisor.Always,
		Health: &supervisor.HealthCheck{
			Check:    k8s.KubeletProbe().Check,
			Interval: 5 * time.Second,
			Timeout:  3 * time.Second,
			// A hung kubelet (3 failed /healthz in a row) is restarted.
			FailureThreshold: 3,
		},
	}
}

// kubeletRunner is the kubelet controller with the node's inputs.
func (n *Node) kubeletRunner() *kubelet.Runner {
	p := n.kubeletPaths()
	return &kubelet.Runner{
		Inputs: kubelet.Inputs{
			Config: n.Config,
			Node:   n.kubeletNode,
			Paths:  p,
			Resolvers: func(cfg *config.Config) []string {
				servers, _ := n.network.Resolvers(cfg.Machine.Network)
				return servers
			},
		},
		Binary: n.kubeletBinary,
		ClientCert: func(ctx context.Context, cfg *config.Config, kn k8s.KubeletNode, out io.Writer) error {
			return n.kubeletClientCert().Ensure(ctx, cfg, kn, out)
		},
		Restart: func(ctx context.Context) error { return n.sup.Restart(ctx, kubeletService) },
		LogTail: func(lines int) []string {
			buf, err := n.sup.Logs(kubeletService)
			if err != nil {
				return nil
			}
			return buf.Tail(lines)
		},
	}
}
