// Package controlplane runs a control plane's Kubernetes components —
// kube-apiserver, kube-controller-manager and kube-scheduler — as
// containers of the node's containerd. Each start builds the container from
// the current machine config (extraArgs, image, the node's address and its
// etcd member), so a restart picks up whatever changed; Fingerprints tell
// the files controller (k8scerts) which components a config change
// concerns.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/pkg/config"
)

// GracePeriod is how long a component has to stop before it is killed.
const GracePeriod = 15 * time.Second

// Runtime is the node's containerd, as a component's container needs it.
type Runtime interface {
	Client() (*containerd.Client, error)
	FIFODir() string
	RuncRoot() string
}

// Inputs are what the components are made of, read at each start.
type Inputs struct {
	Config func() *config.Config
	Node   func(*config.Config) k8s.Node
	Paths  k8s.Paths
	// Runtime is the node's containerd (it may be replaced on restart).
	Runtime func() Runtime
}

// Component runs one component (supervisor.Runner).
type Component struct {
	Name   string
	Inputs Inputs
}

func (c *Component) String() string { return "container(" + c.Name + ")" }

// Run builds the component's container from the current config and runs
// it until ctx ends or it exits.
func (c *Component) Run(ctx context.Context, out io.Writer, started func()) error {
	cfg := c.Inputs.Config()
	if cfg == nil {
		return errors.New("no machine config")
	}
	node := c.Inputs.Node(cfg)
	comps, err := k8s.Components(cfg, node, c.Inputs.Paths)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(comps, func(k k8s.Component) bool { return k.Name == c.Name })
	if i < 0 {
		return fmt.Errorf("unknown component %s", c.Name)
	}
	k := comps[i]
	rt := c.Inputs.Runtime()
	if rt == nil {
		return errors.New("containerd does not run on this node")
	}
	return runner.Container(runner.ContainerOptions{
		Client:      rt.Client,
		ID:          k.Name,
		Image:       k.Image,
		Args:        k.Args,
		Mounts:      k.Mounts,
		Hostname:    node.Name,
		CgroupsPath: "/ballast/" + node.Name + "/" + k.Name,
		FIFODir:     rt.FIFODir(),
		RuncRoot:    rt.RuncRoot(),
		GracePeriod: GracePeriod,
	}).Run(ctx, out, started)
}

// Fingerprints identify each component's image and flags: a component whose
// fingerprint changes must restart (a new advertise address, and so a new
// etcd server, restarts the apiserver).
func Fingerprints(cfg *config.Config, node k8s.Node, p k8s.Paths) map[string]string {
	comps, err := k8s.Components(cfg, node, p)
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, c := range comps {
		out[c.Name] = c.Image + " " + strings.Join(c.Args, " ")
	}
	return out
}
