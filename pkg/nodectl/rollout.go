package nodectl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/bundle"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/health"
	"github.com/ballast-os/ballast/pkg/rollout"
)

// rolloutFlags are the flags of a rolling upgrade.
type rolloutFlags struct {
	dryRun         bool
	maxUnavailable int
	drainTimeout   time.Duration
	clusterTimeout time.Duration
}

func (r *rolloutFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&r.dryRun, "dry-run", false, "print the plan (order, what each node runs now, what is skipped) and change nothing")
	cmd.Flags().IntVar(&r.maxUnavailable, "max-unavailable", 1, "workers upgraded at once (control planes are always one at a time)")
	cmd.Flags().DurationVar(&r.drainTimeout, "drain-timeout", 5*time.Minute, "how long evicting a node's pods may take (PodDisruptionBudgets can hold it) before the rollout stops")
	cmd.Flags().DurationVar(&r.clusterTimeout, "cluster-timeout", 5*time.Minute, "how long the cluster may take to be healthy again after each node")
}

func newClusterUpgradeCmd(g *globals) *cobra.Command {
	var (
		src          string
		force        bool
		cps, workers []string
		f            upgradeFlags
		r            rolloutFlags
	)
	cmd := &cobra.Command{
		Use:   "upgrade --bundle DIR|URL",
		Short: "Upgrade every node of a cluster to a bundle, one at a time, with every gate checked",
		Long: `Roll an upgrade bundle over a cluster: the control planes one at a time
(the etcd leader and the VIP holder last), then the workers, --max-unavailable
at once. The nodes come from --control-plane-nodes and --worker-nodes, else
from the local cluster named like the current context, else from -n (roles
read from each node's config), as for 'nodectl health'.

The cluster must be healthy to start; a control plane down refuses the
rollout with nothing changed. Before each node: the cluster healthy, every
other etcd member caught up with the leader (else refused: etcd could lose
quorum or acknowledged writes), etcd leadership moved off the node, the
node cordoned and drained through the Eviction API (PodDisruptionBudgets
respected, --drain-timeout). Then the node takes the bundle into its
inactive slot, hands off the VIP, reboots, and must pass its health gate
within --health-timeout, else it boots its old slot again. After it: uncordon,
and the whole cluster healthy (--cluster-timeout) before the next node.

The rollout stops at the first failure and says where; nodes already on the
bundle's version are skipped, so running the same command again resumes it.
See docs/upgrades.md.`,
		Example: `  nodectl cluster upgrade --bundle _out/bundle --dry-run
  nodectl cluster upgrade --bundle _out/bundle
  nodectl cluster upgrade --bundle http://10.5.0.1:8080/bundle --max-unavailable 2 --drain-timeout 10m
  nodectl cluster upgrade --bundle _out/bundle --control-plane-nodes 10.5.0.2,10.5.0.3,10.5.0.4 --worker-nodes 10.5.0.5`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if src == "" {
				return errBundleRequired
			}
			nodes, dial, err := g.clusterNodes(cmd.Context(), cps, workers)
			if err != nil {
				return err
			}
			return g.rollout(cmd, src, force, nodes, dial, f, r)
		},
	}
	cmd.Flags().StringVar(&src, "bundle", "", "the bundle: a directory holding manifest.json, or an http(s) URL of one")
	cmd.Flags().BoolVar(&force, "force", false, "install a build older than the running one")
	cmd.Flags().StringSliceVar(&cps, "control-plane-nodes", nil, "control-plane node addresses")
	cmd.Flags().StringSliceVar(&workers, "worker-nodes", nil, "worker node addresses")
	f.addGate(cmd)
	r.add(cmd)
	return cmd
}

// errBundleRequired is an upgrade without --bundle.
var errBundleRequired = errors.New("--bundle is required: a bundle directory (make images writes _out/bundle) or an http(s) URL of one")

// rollout plans and runs a rolling upgrade of nodes to the bundle at src.
func (g *globals) rollout(cmd *cobra.Command, src string, force bool, nodes []health.Node, dial health.Dialer, f upgradeFlags, rf rolloutFlags) error {
	if src == "" {
		return errBundleRequired
	}
	if f.stage || !f.wait {
		return errors.New("a rolling upgrade waits for each node's health gate: --stage and --wait=false do not apply")
	}
	if rf.maxUnavailable < 1 {
		return fmt.Errorf("--max-unavailable must be at least 1, not %d", rf.maxUnavailable)
	}
	ctx := cmd.Context()
	b, err := bundle.Open(ctx, src)
	if err != nil {
		return err
	}
	found, err := rollout.Inspect(ctx, nodes, dial)
	if err != nil {
		return fmt.Errorf("refusing to start the rollout (nothing was changed): %w", err)
	}
	plan := rollout.MakePlan(found, b.Manifest.Version, rf.maxUnavailable)
	o := rollout.Options{
		Target: b.Manifest.Version, Nodes: nodes, Dial: dial,
		MaxUnavailable: rf.maxUnavailable, DrainTimeout: rf.drainTimeout,
		HealthTimeout: f.healthTimeout, ClusterTimeout: rf.clusterTimeout,
		CatchUpTimeout: 30 * time.Second, Out: g.stdout,
	}
	plan.Print(g.stdout, o)
	if rf.dryRun || len(plan.Steps) == 0 {
		return nil
	}
	fmt.Fprintln(g.stdout)
	if o.Kube, err = kubeClientFor(ctx, nodes, dial); err != nil {
		return fmt.Errorf("refusing to start the rollout (nothing was changed): %w", err)
	}
	o.Upgrade = func(ctx context.Context, n rollout.Node) error {
		return upgradeNode(ctx, g, n.Address, func() (*client.Client, error) { return dial(n.Node) }, b, force, f)
	}
	if err := rollout.Run(ctx, plan, o); err != nil {
		var ne *rollout.NodeError
		if errors.As(err, &ne) {
			fmt.Fprintf(g.stderr, "\nrollout stopped at %s (%s). Nodes done so far stay on %s; once the cause is fixed, the same command resumes (nodes on %s are skipped):\n  %s\n",
				ne.Node, ne.Phase, b.Manifest.Version, b.Manifest.Version, resumeCommand())
		}
		return err
	}
	return nil
}

// resumeCommand is the command line that was run, to run again.
func resumeCommand() string {
	args := make([]string, len(os.Args))
	for i, a := range os.Args {
		args[i] = a
		if a == "" || strings.ContainsAny(a, " \t'\"{}$&|;<>*?") {
			args[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(args, " ")
}

// kubeClientFor returns an admin client of the cluster's Kubernetes
// (through its endpoint, the VIP), or nil when no control plane runs
// kube-apiserver.
func kubeClientFor(ctx context.Context, nodes []health.Node, dial health.Dialer) (*rollout.Kube, error) {
	rc, err := adminRESTConfig(ctx, nodes, dial)
	if rc == nil || err != nil {
		return nil, err
	}
	return rollout.NewKube(rc)
}

// adminRESTConfig is the cluster's admin REST config, from the first
// control plane that gives an admin kubeconfig; nil when no control plane
// runs kube-apiserver.
func adminRESTConfig(ctx context.Context, nodes []health.Node, dial health.Dialer) (*rest.Config, error) {
	var last error
	for _, n := range nodes {
		if n.Role != config.TypeControlPlane {
			continue
		}
		kc, err := adminKubeconfig(ctx, n, dial)
		if err != nil {
			last = err
			continue
		}
		if kc == nil {
			return nil, nil
		}
		rc, err := clientcmd.RESTConfigFromKubeConfig(kc)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig from %s: %w", n.Address, err)
		}
		rc.Timeout = 30 * time.Second
		return rc, nil
	}
	if last == nil {
		return nil, nil
	}
	return nil, fmt.Errorf("no control plane gave an admin kubeconfig: %w", last)
}

// adminKubeconfig asks a control plane for an admin kubeconfig; nil (no
// error) when it runs no kube-apiserver.
func adminKubeconfig(ctx context.Context, n health.Node, dial health.Dialer) ([]byte, error) {
	c, err := dial(n)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	svcs, err := c.ServiceList(cctx, &machine.ServiceListRequest{})
	if err != nil {
		return nil, fmt.Errorf("%s: services: %w", n.Address, err)
	}
	runs := false
	for _, s := range svcs.GetServices() {
		runs = runs || s.GetId() == health.APIServerService
	}
	if !runs {
		return nil, nil
	}
	resp, err := c.Kubeconfig(cctx, &machine.KubeconfigRequest{})
	if err != nil {
		return nil, fmt.Errorf("%s: kubeconfig: %w", n.Address, err)
	}
	return resp.GetKubeconfig(), nil
}
