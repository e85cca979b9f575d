package nodectl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/bundle"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/health"
	"github.com/ballast-os/ballast/pkg/rollout"
)

func newUpgradeK8sCmd(g *globals) *cobra.Command {
	var (
		to, src      string
		force        bool
		cps, workers []string
		r            rolloutFlags
	)
	cmd := &cobra.Command{
		Use:   "upgrade-k8s --to VERSION --bundle DIR|URL",
		Short: "Upgrade a cluster's Kubernetes (components, kubelets, kube-proxy) without touching its OS",
		Long: `Upgrade the Kubernetes release a cluster runs, with every gate checked. The
release comes from a Kubernetes bundle built for it (KUBERNETES_VERSION=VERSION
make kubernetes writes _out/k8s/VERSION/bundle): a kubelet and the images of
the components and kube-proxy.

The version-skew policy is enforced: no minor version skipped, no other
major, no downgrade (a patch downgrade only with --force), and the kubelets
move only after every apiserver runs the target. The cluster must be
healthy to start. Then:

  0. the release is staged on every node (parts a node holds are not sent);
  1. kube-apiserver, one control plane at a time (the VIP holder last):
     each node's machined restarts it under the cluster-wide lock, handing
     the VIP off first; the node's apiserver must answer /version with the
     target, and the cluster be healthy, before the next;
  2. kube-controller-manager and kube-scheduler, one control plane at a time;
  3. the kubelets, control planes then workers (--max-unavailable at once),
     each node cordoned and drained through the Eviction API
     (PodDisruptionBudgets respected, --drain-timeout) and uncordoned once
     its Node reports the target and Ready;
  4. every node's cluster.kubernetesVersion, which makes the control planes
     apply the release's bootstrap manifests; it waits for kube-proxy of the
     target Ready on every node, and checks every component once more.

Each change is a live config change (mode no-reboot): nothing reboots. The
upgrade stops at the first failure and says where; what is on the target
is skipped, so running the same command again resumes it. The nodes are
found as for 'nodectl health'. See docs/upgrades.md.`,
		Example: `  KUBERNETES_VERSION=v1.36.3 make kubernetes
  nodectl upgrade-k8s --to v1.36.3 --bundle _out/k8s/v1.36.3/bundle --dry-run
  nodectl upgrade-k8s --to v1.36.3 --bundle _out/k8s/v1.36.3/bundle
  nodectl upgrade-k8s --to v1.36.3 --bundle http://10.5.0.1:8080/k8s --control-plane-nodes 10.5.0.2,10.5.0.3,10.5.0.4 --worker-nodes 10.5.0.5`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return errors.New("--to is required: the Kubernetes release to run, e.g. v1.36.3")
			}
			if src == "" {
				return fmt.Errorf("--bundle is required: a Kubernetes bundle of %s (KUBERNETES_VERSION=%s make kubernetes writes _out/k8s/%s/bundle) or an http(s) URL of one", to, to, to)
			}
			if r.maxUnavailable < 1 {
				return fmt.Errorf("--max-unavailable must be at least 1, not %d", r.maxUnavailable)
			}
			nodes, dial, err := g.clusterNodes(cmd.Context(), cps, workers)
			if err != nil {
				return err
			}
			return g.upgradeK8s(cmd.Context(), to, src, force, nodes, dial, r)
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "the Kubernetes release to run (vX.Y.Z)")
	f.StringVar(&src, "bundle", "", "the release's Kubernetes bundle: a directory holding manifest.json, or an http(s) URL of one")
	f.BoolVar(&force, "force", false, "allow a patch downgrade (within the same minor version)")
	f.StringSliceVar(&cps, "control-plane-nodes", nil, "control-plane node addresses")
	f.StringSliceVar(&workers, "worker-nodes", nil, "worker node addresses")
	r.add(cmd)
	f.Lookup("max-unavailable").Usage = "kubelets upgraded at once among the workers (control planes are always one at a time)"
	f.Lookup("cluster-timeout").Usage = "how long each change may take to run the target with the cluster healthy again"
	return cmd
}

// upgradeK8s checks, plans and runs a Kubernetes upgrade.
func (g *globals) upgradeK8s(ctx context.Context, to, src string, force bool, nodes []health.Node, dial health.Dialer, rf rolloutFlags) error {
	b, err := bundle.Open(ctx, src)
	if err != nil {
		return err
	}
	switch {
	case !b.Manifest.IsKubernetes():
		return fmt.Errorf("%s is not a Kubernetes bundle (a kubelet and image archives): build one with KUBERNETES_VERSION=%s make kubernetes", src, to)
	case b.Manifest.KubernetesVersion != to:
		return fmt.Errorf("%s is a bundle of Kubernetes %s, not %s", src, b.Manifest.KubernetesVersion, to)
	}
	found, err := rollout.InspectKubernetes(ctx, nodes, dial)
	if err != nil {
		return fmt.Errorf("refusing to start the upgrade (nothing was changed): %w", err)
	}
	plan := rollout.MakeKubernetesPlan(found, to, rf.maxUnavailable)
	if err := rollout.CheckSkew(plan.From, to, force); err != nil {
		return fmt.Errorf("refusing to start the upgrade (nothing was changed): %w", err)
	}
	o := rollout.KubernetesOptions{Options: rollout.Options{
		Target: to, Nodes: nodes, Dial: dial,
		MaxUnavailable: rf.maxUnavailable, DrainTimeout: rf.drainTimeout, ClusterTimeout: rf.clusterTimeout,
		Out: g.stdout,
	}}
	plan.Print(g.stdout, o.Options)
	if rf.dryRun || plan.Done() {
		return nil
	}
	fmt.Fprintln(g.stdout)
	if o.Rest, err = adminRESTConfig(ctx, nodes, dial); err != nil {
		return fmt.Errorf("refusing to start the upgrade (nothing was changed): %w", err)
	}
	if o.Rest == nil {
		return errors.New("refusing to start the upgrade (nothing was changed): no control plane runs kube-apiserver")
	}
	if o.Kube, err = rollout.NewKube(o.Rest); err != nil {
		return err
	}
	o.Stage = func(ctx context.Context, n rollout.Node) error {
		c, err := dial(n.Node)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = sendBundle(ctx, c, b, &machine.UpgradeStart{Kubernetes: true})
		return err
	}
	o.Patch = func(ctx context.Context, n rollout.Node, patch string) error {
		return patchConfig(ctx, dial, n.Node, patch)
	}
	if err := rollout.UpgradeKubernetes(ctx, plan, found, o); err != nil {
		var ne *rollout.NodeError
		if errors.As(err, &ne) {
			fmt.Fprintf(g.stderr, "\nKubernetes upgrade stopped at %s (%s). What runs %s stays on it; once the cause is fixed, the same command resumes:\n  %s\n",
				ne.Node, ne.Phase, to, resumeCommand())
		}
		return err
	}
	return nil
}

// patchConfig applies an RFC 7396 merge patch to a node's config, live: it
// reads the node's config (the admin role sees it whole), patches and
// validates it here, and applies it in mode no-reboot.
func patchConfig(ctx context.Context, dial health.Dialer, n health.Node, patch string) error {
	c, err := dial(n)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cur, err := c.GetConfiguration(ctx, &machine.GetConfigurationRequest{})
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if cur.GetRedacted() {
		return errors.New("the node gave its config redacted: changing it needs the admin role")
	}
	if len(cur.GetStaged()) > 0 {
		return errors.New("the node has a staged config waiting for its next reboot: apply or reboot first")
	}
	data, err := config.ApplyPatches(cur.GetData(), []string{patch})
	if err != nil {
		return err
	}
	if _, err := config.Load(data); err != nil {
		return fmt.Errorf("patched config: %w", err)
	}
	_, err = c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: data, Mode: machine.ApplyMode_NO_REBOOT})
	return err
}
