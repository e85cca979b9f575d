package nodectl

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
)

// powerCmd builds reboot, shutdown and reset, which share their shape.
func powerCmd[T any](g *globals, use, short, example, done string, call func(context.Context, *client.Client) (T, error)) *cobra.Command {
	return &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			results, err := fanOut(cmd, g, call)
			if err != nil {
				return err
			}
			for _, r := range results {
				if r.err == nil {
					fmt.Fprintf(g.stdout, "%s: %s\n", r.node, done)
				}
			}
			return reportErrors(g, results)
		},
	}
}

func newRebootCmd(g *globals) *cobra.Command {
	return powerCmd(g, "reboot", "Reboot nodes (container mode: restart machined in place)",
		"  nodectl -n 10.5.0.2 reboot", "rebooting",
		func(ctx context.Context, c *client.Client) (*machine.RebootResponse, error) {
			return c.Reboot(ctx, &machine.RebootRequest{})
		})
}

func newShutdownCmd(g *globals) *cobra.Command {
	return powerCmd(g, "shutdown", "Stop every service and power nodes off (container mode: exit)",
		"  nodectl -n 10.5.0.2 shutdown", "shutting down",
		func(ctx context.Context, c *client.Client) (*machine.ShutdownResponse, error) {
			return c.Shutdown(ctx, &machine.ShutdownRequest{})
		})
}

func newResetCmd(g *globals) *cobra.Command {
	var graceful, force bool
	cmd := powerCmd(g, "reset", "Wipe nodes' state and return them to maintenance mode",
		"  nodectl -n 10.5.0.4 reset --graceful", "resetting",
		func(ctx context.Context, c *client.Client) (*machine.ResetResponse, error) {
			return c.Reset(ctx, &machine.ResetRequest{Graceful: graceful, Force: force})
		})
	cmd.Flags().BoolVar(&graceful, "graceful", true, "leave the etcd cluster before wiping (control-plane nodes)")
	cmd.Flags().BoolVar(&force, "force", false, "skip safety checks such as the etcd quorum guard")
	return cmd
}
