package nodectl

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
)

func newServicesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "services",
		Short:   "List the services of each node with their state and health",
		Example: "  nodectl -n 10.5.0.2,10.5.0.3 services",
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (*machine.ServiceListResponse, error) {
				return c.ServiceList(ctx, &machine.ServiceListRequest{})
			})
			if err != nil {
				return err
			}
			tw := newTable(g.stdout)
			defer tw.Flush()
			if g.output == "table" {
				fmt.Fprintln(tw, "NODE\tSERVICE\tSTATE\tHEALTH\tRESTARTS\tSINCE")
			}
			return render(g, results, func(node string, v *machine.ServiceListResponse) {
				for _, s := range v.GetServices() {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", node, s.GetId(), s.GetState(), healthText(s.GetHealth()), s.GetRestarts(), since(s))
				}
			})
		},
	}
}

func healthText(h *machine.ServiceHealth) string {
	switch {
	case h == nil || h.GetUnknown():
		return "?"
	case h.GetHealthy():
		return "OK"
	}
	return "Fail"
}

func since(s *machine.ServiceInfo) string {
	if s.GetSince() == nil {
		return "-"
	}
	return time.Since(s.GetSince().AsTime()).Round(time.Second).String()
}

func newServiceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service ID [start|stop|restart]",
		Short: "Show one service's details and events, or start, stop or restart it",
		Example: `  nodectl -n 10.5.0.2 service metrics
  nodectl -n 10.5.0.2 service metrics restart`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return fmt.Errorf("%s needs ID and optionally start, stop or restart; see --help", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			id := args[0]
			if len(args) == 1 {
				return showService(cmd, g, id)
			}
			var call func(context.Context, *client.Client) (*machine.ServiceActionResponse, error)
			req := &machine.ServiceActionRequest{Id: id}
			switch args[1] {
			case "start":
				call = func(ctx context.Context, c *client.Client) (*machine.ServiceActionResponse, error) {
					return c.ServiceStart(ctx, req)
				}
			case "stop":
				call = func(ctx context.Context, c *client.Client) (*machine.ServiceActionResponse, error) {
					return c.ServiceStop(ctx, req)
				}
			case "restart":
				call = func(ctx context.Context, c *client.Client) (*machine.ServiceActionResponse, error) {
					return c.ServiceRestart(ctx, req)
				}
			default:
				return fmt.Errorf("unknown action %q: use start, stop or restart", args[1])
			}
			results, err := fanOut(cmd, g, call)
			if err != nil {
				return err
			}
			for _, r := range results {
				if r.err == nil {
					fmt.Fprintf(g.stdout, "%s: %s\n", r.node, r.value.GetMessage())
				}
			}
			return reportErrors(g, results)
		},
	}
	return cmd
}

func showService(cmd *cobra.Command, g *globals, id string) error {
	results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (*machine.ServiceInfo, error) {
		resp, err := c.ServiceList(ctx, &machine.ServiceListRequest{})
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range resp.GetServices() {
			if s.GetId() == id {
				return s, nil
			}
			names = append(names, s.GetId())
		}
		return nil, fmt.Errorf("no service %q (services: %s)", id, strings.Join(names, ", "))
	})
	if err != nil {
		return err
	}
	return render(g, results, func(node string, v *machine.ServiceInfo) { printService(g.stdout, node, v) })
}

func printService(w io.Writer, node string, s *machine.ServiceInfo) {
	tw := newTable(w)
	fmt.Fprintf(tw, "NODE\t%s\n", node)
	fmt.Fprintf(tw, "ID\t%s\n", s.GetId())
	fmt.Fprintf(tw, "DESCRIPTION\t%s\n", s.GetDescription())
	fmt.Fprintf(tw, "STATE\t%s\n", s.GetState())
	fmt.Fprintf(tw, "HEALTH\t%s %s\n", healthText(s.GetHealth()), s.GetHealth().GetLastMessage())
	fmt.Fprintf(tw, "RESTARTS\t%d\n", s.GetRestarts())
	fmt.Fprintf(tw, "EVENTS\t\n")
	for _, e := range s.GetEvents() {
		fmt.Fprintf(tw, "\t[%s] %s: %s\n", e.GetTime().AsTime().Local().Format(time.DateTime), e.GetState(), e.GetMessage())
	}
	tw.Flush()
}

func newLogsCmd(g *globals) *cobra.Command {
	var follow bool
	var tail int32
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Show a service's log (ID machined is the agent itself)",
		Example: `  nodectl -n 10.5.0.2 logs machined --tail 20
  nodectl -n 10.5.0.2 logs metrics -f`,
		Args: exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return streamLines(cmd, g, func(ctx context.Context, c *client.Client) (lineStream, error) {
				return c.Logs(ctx, &machine.LogsRequest{Id: args[0], Follow: follow, TailLines: tail})
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep streaming new lines")
	cmd.Flags().Int32Var(&tail, "tail", -1, "lines of history to show first (-1: all kept)")
	return cmd
}

func newDmesgCmd(g *globals) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "dmesg",
		Short: "Show the node's kernel log (in container mode: the host's)",
		Example: `  nodectl -n 10.5.0.2 dmesg
  nodectl -n 10.5.0.2 dmesg -f`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			return streamLines(cmd, g, func(ctx context.Context, c *client.Client) (lineStream, error) {
				return c.Dmesg(ctx, &machine.DmesgRequest{Follow: follow})
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep streaming new kernel messages")
	return cmd
}

// lineStream is a server stream of log lines (Logs, Dmesg).
type lineStream interface {
	Recv() (*machine.LogLine, error)
}

// streamLines opens a stream on every node and prints its lines until it
// ends (or, while following, until the command is interrupted), prefixed by
// the node when several are asked.
func streamLines(cmd *cobra.Command, g *globals, open func(context.Context, *client.Client) (lineStream, error)) error {
	results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (struct{}, error) {
		stream, err := open(ctx, c)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, printLines(ctx, g, c.Address, stream)
	})
	if err != nil {
		return err
	}
	return reportErrors(g, results)
}

func printLines(ctx context.Context, g *globals, node string, stream lineStream) error {
	err := eachLine(stream, func(line string) {
		if len(g.nodes) > 1 {
			fmt.Fprintf(g.stdout, "%s: %s\n", node, line)
		} else {
			fmt.Fprintln(g.stdout, line)
		}
	})
	if err != nil && ctx.Err() != nil {
		return nil // interrupted while following
	}
	return err
}

// eachLine calls fn with every line of stream until it ends (nil) or fails.
func eachLine(stream lineStream, fn func(line string)) error {
	for {
		line, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		fn(line.GetLine())
	}
}
