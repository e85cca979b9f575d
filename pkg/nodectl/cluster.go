package nodectl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/cluster"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/health"
	"github.com/ballast-os/ballast/pkg/nodeconfig"
)

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Create, show and destroy local clusters on this machine; roll an upgrade over a cluster"}
	cmd.AddCommand(newClusterCreateCmd(g), newClusterShowCmd(g), newClusterDestroyCmd(g), newClusterUpgradeCmd(g))
	return cmd
}

func defaultMachined() string {
	if exe, err := os.Executable(); err == nil {
		return filepath.Join(filepath.Dir(exe), "machined")
	}
	return "machined"
}

// defaultArtifacts is _out next to the CLI's _out/bin.
func defaultArtifacts() string {
	if exe, err := os.Executable(); err == nil {
		return filepath.Dir(filepath.Dir(exe))
	}
	return "_out"
}

func newClusterCreateCmd(g *globals) *cobra.Command {
	o := cluster.Options{}
	var provisioner string
	var withVIP, noK8s bool
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a local HA cluster: machined in network namespaces on a bridge",
		Long: `Create a local cluster. Each node is a machined process in container mode in its
own named network namespace (see 'ip netns list'), wired to a bridge with a veth.
Configs are generated and applied, the first control plane bootstraps etcd, the
others join by themselves, and the command waits until 'nodectl health' is green.
The control planes share a VIP (the subnet's last usable address, e.g.
10.5.0.254), which is the cluster's endpoint; 'nodectl get vip' shows its holder.
A context named after the cluster is merged into the nodeconfig and made current.
Every node runs containerd and a kubelet (its client certificate signed by a
control plane; no bootstrap token); control planes run kube-apiserver, kube-controller-manager and
kube-scheduler, and apply kube-proxy and CoreDNS, all from the image archives
of _out/images ('make images'). The nodes of each role are spread over
--zones zones (topology.kubernetes.io/zone). The command waits until every
node is Ready and CoreDNS is available; 'nodectl kubeconfig' then gives
kubectl access. Needs root.

With --provisioner qemu each node is instead a qemu VM (TCG) booting the OS
artifacts of 'make images' (kernel, initramfs and a copy-on-write overlay of the
cloud disk) on a tap device of the bridge; Debian's dnsmasq on the bridge leases
every VM its planned address, the configs are applied through the maintenance
API as for namespaces, and each VM's serial console is written to
~/.nodectl/clusters/NAME/nodes/NODE/console.log. With Kubernetes the VMs
also boot the component images (images.cpio, a second initrd) and get 3 GiB
(control planes) or 2.5 GiB (workers) of memory; with --no-kubernetes, 1.5 GiB.
TCG is slow: a control plane and a worker take a few minutes to be Ready.
'cluster destroy' powers every VM off.`,
		Example: `  nodectl cluster create
  nodectl cluster create --name lab --controlplanes 5 --workers 2 --cidr 10.6.0.0/24
  nodectl cluster create --name big --workers 4 --zones 2
  nodectl cluster create --name etcd-only --no-kubernetes
  nodectl cluster create --name vms --provisioner qemu --no-kubernetes --workers 0
  nodectl cluster create --name vmk8s --provisioner qemu --controlplanes 1 --workers 1 --cidr 10.7.0.0/24
  nodectl cluster create --config-patch-control-plane '{"cluster":{"etcd":{"snapshots":{"interval":"1h","keep":3}}}}'`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Provisioner = provisioner
			o.NodeconfigPath = g.nodeconfigPath()
			o.Progress = g.stdout
			o.NoVIP = !withVIP
			o.NoKubernetes = noK8s
			start := time.Now()
			st, err := cluster.Create(cmd.Context(), o)
			if err != nil {
				if st != nil {
					return fmt.Errorf("%w\n(what was created is recorded: nodectl cluster destroy --name %s removes it)", err, o.Name)
				}
				return err
			}
			fmt.Fprintf(g.stdout, "\ncluster %s is healthy after %s; endpoint %s\n\n", st.Name, time.Since(start).Round(100*time.Millisecond), st.Endpoint)
			printClusterTable(g, st)
			fmt.Fprintf(g.stdout, "\ncontext %q is current in %s; try:\n  nodectl health\n  nodectl etcd members\n", st.Name, o.NodeconfigPath)
			if !o.NoKubernetes {
				fmt.Fprintf(g.stdout, "\nKubernetes: get an admin kubeconfig for %s and use kubectl:\n  %s kubeconfig\n  kubectl get nodes -L topology.kubernetes.io/zone\n  kubectl -n kube-system get pods -o wide\n", st.Endpoint, os.Args[0])
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "ballast", "cluster name")
	f.IntVar(&o.ControlPlanes, "controlplanes", 3, "number of control-plane nodes")
	f.IntVar(&o.Workers, "workers", 1, "number of worker nodes")
	f.IntVar(&o.Zones, "zones", 3, "spread the nodes of each role over this many zones (zone-a, zone-b, …) as their topology.kubernetes.io/zone label; 0 for none")
	f.StringVar(&o.CIDR, "cidr", "10.5.0.0/24", "network of the cluster's bridge")
	f.StringVar(&provisioner, "provisioner", cluster.ProvisionerNetns, "how nodes run: netns (machined in network namespaces) or qemu (VMs booting the OS image)")
	f.StringVar(&o.Artifacts, "artifacts", defaultArtifacts(), "directory of the OS artifacts VM nodes boot (vmlinuz, initramfs.xz, disk.qcow2; 'make images')")
	f.StringVar(&o.Root, "state", cluster.DefaultRoot(), "directory of local clusters' state")
	f.StringVar(&o.Machined, "machined-path", defaultMachined(), "machined binary to run")
	f.DurationVar(&o.WaitTimeout, "wait-timeout", 0, "how long to wait for the cluster to be healthy (default 5m; 15m for VMs with Kubernetes)")
	f.StringArrayVar(&o.Patches, "config-patch", nil, "patch for every node's config, inline or @file (repeatable)")
	f.StringArrayVar(&o.ControlPlanePatches, "config-patch-control-plane", nil, "patch for control-plane configs (repeatable)")
	f.StringArrayVar(&o.WorkerPatches, "config-patch-worker", nil, "patch for worker configs (repeatable)")
	f.BoolVar(&o.SkipBootstrap, "skip-bootstrap", false, "do not bootstrap etcd (to run 'bootstrap --recover-from' yourself)")
	f.BoolVar(&noK8s, "no-kubernetes", false, "run only the node agent and etcd (no containerd, no Kubernetes components)")
	f.StringVar(&o.ImagesDir, "images-dir", "", "image archives the nodes import (default: machined's, _out/images next to it)")
	f.StringVar(&o.KubernetesVersion, "kubernetes-version", "", "Kubernetes release the cluster runs (default: the one Ballast pins); another one (netns only) needs KUBERNETES_VERSION=<v> make kubernetes first")
	f.BoolVar(&withVIP, "vip", true, "give the control planes a VIP (the subnet's last usable address) and make it the endpoint")
	return cmd
}

func newClusterShowCmd(g *globals) *cobra.Command {
	var name, root string
	cmd := &cobra.Command{
		Use:     "show",
		Short:   "Show a local cluster's nodes",
		Example: "  nodectl cluster show --name ballast -o json",
		Args:    exactArgs(0, ""),
		RunE: func(*cobra.Command, []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			st, err := cluster.Load(root, name)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printStructured(st)
			}
			vip := st.VIP
			if vip == "" {
				vip = "none"
			}
			fmt.Fprintf(g.stdout, "cluster %s (%s, %s), endpoint %s, VIP %s\n\n", st.Name, st.Provisioner, st.CIDR, st.Endpoint, vip)
			printClusterTable(g, st)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "ballast", "cluster name")
	cmd.Flags().StringVar(&root, "state", cluster.DefaultRoot(), "directory of local clusters' state")
	return cmd
}

func printClusterTable(g *globals, st *cluster.State) {
	tw := newTable(g.stdout)
	fmt.Fprintln(tw, "NAME\tROLE\tADDRESS\tZONE\tRUNS IN\tPID")
	for _, n := range st.Nodes {
		zone := n.Zone
		if zone == "" {
			zone = "-"
		}
		where := "netns " + n.Netns
		if st.Provisioner == cluster.ProvisionerQEMU {
			where = "qemu VM, tap " + n.Veth
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", n.Name, n.Role, n.Address, zone, where, n.PID)
	}
	tw.Flush()
}

func newClusterDestroyCmd(g *globals) *cobra.Command {
	var name, root string
	cmd := &cobra.Command{
		Use:     "destroy",
		Short:   "Stop a local cluster's nodes and remove its namespaces, links and state (idempotent)",
		Example: "  nodectl cluster destroy --name ballast",
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cluster.Destroy(cmd.Context(), root, name, g.nodeconfigPath(), g.stdout)
		},
	}
	cmd.Flags().StringVar(&name, "name", "ballast", "cluster name")
	cmd.Flags().StringVar(&root, "state", cluster.DefaultRoot(), "directory of local clusters' state")
	return cmd
}

func newHealthCmd(g *globals) *cobra.Command {
	var cps, workers []string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check the cluster: nodes answer, services healthy, etcd, the VIP, kube-apiservers ready, endpoint and leader leases",
		Long: `Check the cluster's health. The nodes come from --control-plane-nodes and
--worker-nodes, else from the local cluster named like the current context, else
from -n (roles are read from each node's config).

Checks: every node answers; its services are up and pass their health checks;
etcd's members are exactly the control planes, started and voting, with one
leader and no alarms; one control plane holds the VIP; and where Kubernetes
runs: kube-apiserver ready on every control plane, the endpoint answers
/readyz (with an admin kubeconfig a control plane issues), and the
kube-scheduler and kube-controller-manager leases are held.`,
		Example: `  nodectl health
  nodectl health --control-plane-nodes 10.5.0.2,10.5.0.3,10.5.0.4 --worker-nodes 10.5.0.5 --wait-timeout 2m`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			nodes, dial, err := g.clusterNodes(cmd.Context(), cps, workers)
			if err != nil {
				return err
			}
			err = health.Wait(cmd.Context(), nodes, dial, wait, g.stderr)
			if errors.Is(err, health.ErrUnhealthy) {
				return err
			}
			if err != nil {
				return err
			}
			for _, c := range health.Run(cmd.Context(), nodes, dial) {
				status := "OK  "
				if c.Err != nil {
					status = "FAIL" // changed since Wait passed
				}
				fmt.Fprintf(g.stdout, "%s %s\n", status, c.Name)
			}
			fmt.Fprintf(g.stdout, "healthy: %d nodes (%d control planes)\n", len(nodes), countRole(nodes, config.TypeControlPlane))
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&cps, "control-plane-nodes", nil, "control-plane node addresses")
	cmd.Flags().StringSliceVar(&workers, "worker-nodes", nil, "worker node addresses")
	cmd.Flags().DurationVar(&wait, "wait-timeout", 0, "keep checking until healthy or this long (0: check once)")
	return cmd
}

func countRole(nodes []health.Node, role string) int {
	n := 0
	for _, x := range nodes {
		if x.Role == role {
			n++
		}
	}
	return n
}

// clusterNodes are the nodes of the current context's cluster, as
// healthNodes finds them, and how to dial them.
func (g *globals) clusterNodes(ctx context.Context, cps, workers []string) ([]health.Node, health.Dialer, error) {
	name, nctx, err := g.loadNamedContext()
	if err != nil {
		return nil, nil, err
	}
	dial := health.ContextDialer(nctx)
	nodes, err := g.healthNodes(ctx, name, nctx, cps, workers, dial)
	return nodes, dial, err
}

// healthNodes decides which nodes to check and their roles: the flags, else
// the local cluster named like the context, else the targets with the role
// each node's config names.
func (g *globals) healthNodes(ctx context.Context, contextName string, nctx *nodeconfig.Context, cps, workers []string, dial health.Dialer) ([]health.Node, error) {
	var nodes []health.Node
	if len(cps)+len(workers) > 0 {
		for _, a := range cps {
			nodes = append(nodes, health.Node{Address: a, Role: config.TypeControlPlane})
		}
		for _, a := range workers {
			nodes = append(nodes, health.Node{Address: a, Role: config.TypeWorker})
		}
		return nodes, nil
	}
	if len(g.nodes) == 0 {
		if st, err := cluster.Load(cluster.DefaultRoot(), contextName); err == nil {
			for _, n := range st.Nodes {
				nodes = append(nodes, health.Node{Address: n.Address, Role: n.Role})
			}
			return nodes, nil
		}
	}
	targets, err := g.targets(nctx)
	if err != nil {
		return nil, err
	}
	for _, a := range targets {
		role, err := nodeRole(ctx, dial, a)
		if err != nil {
			return nil, fmt.Errorf("%s: %s", a, oneLine(explain(err, a)))
		}
		nodes = append(nodes, health.Node{Address: a, Role: role})
	}
	return nodes, nil
}

func nodeRole(ctx context.Context, dial health.Dialer, addr string) (string, error) {
	c, err := dial(health.Node{Address: addr})
	if err != nil {
		return "", err
	}
	defer c.Close()
	resp, err := c.GetConfiguration(ctx, &machine.GetConfigurationRequest{})
	if err != nil {
		return "", err
	}
	cfg, err := config.Decode(resp.GetData())
	if err != nil {
		return "", err
	}
	return cfg.Machine.Type, nil
}
