package nodectl

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/version"
)

func newVersionCmd(g *globals) *cobra.Command {
	var clientOnly, insecure bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show the client version and the version of machined on each node",
		Example: `  nodectl version --client
  nodectl -n 10.5.0.2 version
  nodectl version --insecure -n 10.5.0.2   # a node in maintenance mode`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if g.output == "table" {
				fmt.Fprintf(g.stdout, "Client:\n\tnodectl %s (%s%s, %s)\n", version.Version, version.GitCommit, committed(version.CommitTime), version.GoVersion())
			}
			if clientOnly {
				return nil
			}
			call := func(ctx context.Context, c *client.Client) (*machine.VersionResponse, error) {
				return c.Version(ctx, &machine.VersionRequest{})
			}
			var results []result[*machine.VersionResponse]
			var err error
			if insecure {
				results, err = insecureFanOut(cmd.Context(), g, "", call)
			} else {
				results, err = fanOut(cmd, g, call)
			}
			if err != nil {
				return err
			}
			return render(g, results, func(node string, v *machine.VersionResponse) {
				state := "configured"
				if v.GetMaintenance() {
					state = "maintenance mode"
				}
				slot := ""
				if v.GetSlot() != "" {
					slot = ", slot " + v.GetSlot()
				}
				fmt.Fprintf(g.stdout, "Node %s:\n\tmachined %s (%s%s, %s) %s/%s, %s mode%s, %s\n",
					node, v.GetVersion(), v.GetGitCommit(), committed(v.GetCommitTime()), v.GetGoVersion(), v.GetOs(), v.GetArch(), v.GetMode(), slot, state)
			})
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "show only the client version")
	cmd.Flags().BoolVarP(&insecure, "insecure", "i", false, "ask a node in maintenance mode (no client certificate)")
	return cmd
}

// committed is ", committed TIME" for a known commit time.
func committed(t string) string {
	if t == "" {
		return ""
	}
	return ", committed " + t
}

func newGetCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get",
		Short: "Show node resources",
	}
	cmd.AddCommand(newGetVIPCmd(g))
	cmd.AddCommand(newGetNetworkCmds(g)...)
	cmd.AddCommand(newGetTimeCmd(g))
	cmd.AddCommand(newGetSlotsCmd(g))
	cmd.AddCommand(&cobra.Command{
		Use:   "config",
		Short: "Show the active machine config (secrets redacted unless you are os:admin)",
		Example: `  nodectl -n 10.5.0.2 get config
  nodectl -n 10.5.0.2 get config -o json`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (*machine.GetConfigurationResponse, error) {
				return c.GetConfiguration(ctx, &machine.GetConfigurationRequest{})
			})
			if err != nil {
				return err
			}
			if g.output != "table" {
				out := []map[string]any{}
				for _, r := range results {
					entry := map[string]any{"node": r.node}
					if r.err != nil {
						entry["error"] = oneLine(explain(r.err, r.node))
					} else {
						var doc any
						if err := yaml.Unmarshal(r.value.GetData(), &doc); err != nil {
							return fmt.Errorf("%s: decode config: %w", r.node, err)
						}
						entry["config"], entry["redacted"] = doc, r.value.GetRedacted()
					}
					out = append(out, entry)
				}
				if err := g.printStructured(out); err != nil {
					return err
				}
				return reportErrors(g, results)
			}
			for _, r := range results {
				if r.err != nil {
					continue
				}
				if len(results) > 1 {
					fmt.Fprintf(g.stdout, "# node %s\n", r.node)
				}
				if r.value.GetStaged() != nil {
					fmt.Fprintln(g.stdout, "# a staged config waits for the next reboot")
				}
				fmt.Fprint(g.stdout, string(r.value.GetData()))
			}
			return reportErrors(g, results)
		},
	})
	return cmd
}

func newGetVIPCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "vip",
		Short: "Show the control-plane VIP: its holder, since when, the holder's etcd lease and the claim's term",
		Long: `Show the control-plane VIP as each node sees it. Every control plane follows the
claim in etcd, so any of them names the holder; LOCAL marks the node that holds it.`,
		Example: `  nodectl -n 10.5.0.2,10.5.0.3,10.5.0.4 get vip
  nodectl -n 10.5.0.2 get vip -o json`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (*machine.VIPStatusResponse, error) {
				return c.VIPStatus(ctx, &machine.VIPStatusRequest{})
			})
			if err != nil {
				return err
			}
			tw := newTable(g.stdout)
			if g.output == "table" {
				fmt.Fprintln(tw, "NODE\tVIP\tLINK\tHOLDER\tSINCE\tLEASE\tTERM\tLOCAL")
			}
			err = render(g, results, func(node string, v *machine.VIPStatusResponse) {
				if v.GetIp() == "" {
					fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\n", node)
					return
				}
				since := "-"
				if v.GetSince() != nil {
					since = v.GetSince().AsTime().Local().Format(time.RFC3339)
				}
				holder := v.GetHolder()
				if holder == "" {
					holder = "(none)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%x\t%d\t%v\n", node, v.GetIp(), v.GetLink(), holder, since, v.GetLease(), v.GetTerm(), v.GetLocal())
			})
			_ = tw.Flush()
			return err
		},
	}
}
