package nodectl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/kubeconfig"
)

// defaultKubeconfig is the first file of $KUBECONFIG, else ~/.kube/config.
func defaultKubeconfig() string {
	if env := os.Getenv("KUBECONFIG"); env != "" {
		return filepath.SplitList(env)[0]
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".kube", "config")
}

func newKubeconfigCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "kubeconfig [PATH]",
		Short: "Get an admin kubeconfig for the cluster's endpoint and merge it into ~/.kube/config",
		Long: `Ask a control-plane node for an admin kubeconfig (a new client certificate in
group system:masters, valid for cluster.certificateLifetime) whose server is the
cluster's endpoint (the VIP), and merge it into PATH: its cluster, user and
context replace those of the same name, everything else is kept, and its
context becomes current. PATH defaults to the first file of $KUBECONFIG, else
~/.kube/config; '-' prints it instead. --force replaces the file.
With several nodes or endpoints, the first that answers issues it.`,
		Example: `  nodectl kubeconfig
  kubectl get --raw=/readyz
  nodectl -n 10.5.0.2 kubeconfig ./kubeconfig && kubectl --kubeconfig ./kubeconfig get nodes
  nodectl kubeconfig - > admin.conf`,
		Args:        cobra.MaximumNArgs(1),
		Annotations: map[string]string{annotationControlPlane: "true"},
		RunE: func(cmd *cobra.Command, args []string) error {
			path := defaultKubeconfig()
			if len(args) == 1 {
				path = args[0]
			}
			resp, err := firstAnswer(cmd, g, func(ctx context.Context, c *client.Client) (*machine.KubeconfigResponse, error) {
				return c.Kubeconfig(ctx, &machine.KubeconfigRequest{})
			})
			if err != nil {
				return err
			}
			if path == "-" {
				_, err := g.stdout.Write(resp.GetKubeconfig())
				return err
			}
			data := resp.GetKubeconfig()
			if old, err := os.ReadFile(path); err == nil && !force {
				if data, err = kubeconfig.Merge(old, data); err != nil {
					return fmt.Errorf("%s: %w (use --force to replace it)", path, err)
				}
			} else if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			if err := atomicfile.Write(path, data, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "kubeconfig for %s written to %s (certificate valid until %s)\n",
				resp.GetServer(), path, resp.GetExpires().AsTime().Local().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace PATH instead of merging into it")
	return cmd
}

// firstAnswer calls fn on the targets one at a time and returns the first
// answer; the errors of all when none answers.
func firstAnswer[T any](cmd *cobra.Command, g *globals, fn func(ctx context.Context, c *client.Client) (T, error)) (T, error) {
	var zero T
	nctx, err := g.loadContext()
	if err != nil {
		return zero, err
	}
	nodes, err := g.targets(nctx)
	if err != nil {
		return zero, err
	}
	var errs []string
	for _, node := range nodes {
		opts := func(node string) (client.Options, error) {
			o, err := client.FromContext(nctx, node)
			o.RequireControlPlane = controlPlaneOnly(cmd)
			return o, err
		}
		r := callAll(cmd.Context(), []string{node}, opts, fn)[0]
		if r.err == nil {
			return r.value, nil
		}
		errs = append(errs, node+": "+oneLine(explain(r.err, node)))
	}
	return zero, errors.New(strings.Join(errs, "\n"))
}

func newContainersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "containers",
		Short: "List the node's system containers (the Kubernetes control-plane components)",
		Long: `List the containers machined runs in containerd's "system" namespace: ID, image,
task status and PID. Their output is the service log: 'nodectl logs kube-apiserver'.`,
		Example: `  nodectl -n 10.5.0.2 containers
  nodectl -n 10.5.0.2,10.5.0.3 containers -o json`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (*machine.ContainersResponse, error) {
				return c.Containers(ctx, &machine.ContainersRequest{})
			})
			if err != nil {
				return err
			}
			tw := newTable(g.stdout)
			if g.output == "table" {
				fmt.Fprintln(tw, "NODE\tNAMESPACE\tID\tIMAGE\tSTATUS\tPID")
			}
			err = render(g, results, func(node string, v *machine.ContainersResponse) {
				for _, c := range v.GetContainers() {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", node, c.GetNamespace(), c.GetId(), c.GetImage(), c.GetStatus(), c.GetPid())
				}
			})
			_ = tw.Flush()
			return err
		},
	}
}
