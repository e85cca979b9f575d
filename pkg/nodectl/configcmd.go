package nodectl

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ballast-os/ballast/pkg/nodeconfig"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Manage the client config (contexts, endpoints, nodes)",
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:     "contexts",
			Short:   "List the contexts; * marks the current one",
			Example: "  nodectl config contexts",
			Args:    exactArgs(0, ""),
			RunE: func(*cobra.Command, []string) error {
				c, err := nodeconfig.Load(g.nodeconfigPath())
				if err != nil {
					return err
				}
				tw := newTable(g.stdout)
				fmt.Fprintln(tw, "CURRENT\tNAME\tENDPOINTS\tNODES")
				for _, name := range c.Names() {
					mark := ""
					if name == c.Context {
						mark = "*"
					}
					ctx := c.Contexts[name]
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", mark, name, strings.Join(ctx.Endpoints, ","), strings.Join(ctx.Nodes, ","))
				}
				return tw.Flush()
			},
		},
		&cobra.Command{
			Use:     "context NAME",
			Short:   "Switch the current context",
			Example: "  nodectl config context demo",
			Args:    exactArgs(1, "NAME"),
			RunE: func(_ *cobra.Command, args []string) error {
				return g.editConfig(func(c *nodeconfig.Config) error {
					if _, _, err := c.Current(args[0]); err != nil {
						return err
					}
					c.Context = args[0]
					fmt.Fprintf(g.stdout, "current context is now %q\n", args[0])
					return nil
				})
			},
		},
		&cobra.Command{
			Use:     "endpoint ADDR...",
			Short:   "Set the current context's endpoints",
			Example: "  nodectl config endpoint 10.5.0.2 10.5.0.3",
			Args:    cobra.MinimumNArgs(1),
			RunE: func(_ *cobra.Command, args []string) error {
				return g.editContext(func(ctx *nodeconfig.Context) { ctx.Endpoints = splitArgs(args) })
			},
		},
		&cobra.Command{
			Use:     "node [ADDR...]",
			Short:   "Set the current context's default nodes (none: clear them)",
			Example: "  nodectl config node 10.5.0.2",
			RunE: func(_ *cobra.Command, args []string) error {
				return g.editContext(func(ctx *nodeconfig.Context) { ctx.Nodes = splitArgs(args) })
			},
		},
		&cobra.Command{
			Use:     "merge FILE",
			Short:   "Merge the contexts of another nodeconfig into this one and make its context current",
			Example: "  nodectl config merge ./nodeconfig",
			Args:    exactArgs(1, "FILE"),
			RunE: func(_ *cobra.Command, args []string) error {
				other, err := nodeconfig.Load(args[0])
				if err != nil {
					return err
				}
				if len(other.Contexts) == 0 {
					return fmt.Errorf("%s has no contexts", args[0])
				}
				return g.editConfig(func(c *nodeconfig.Config) error {
					for from, to := range c.Merge(other, false) {
						if from != to {
							fmt.Fprintf(g.stdout, "context %q exists; merged as %q\n", from, to)
						} else {
							fmt.Fprintf(g.stdout, "merged context %q\n", to)
						}
					}
					return nil
				})
			},
		},
	)
	return cmd
}

func (g *globals) editConfig(fn func(*nodeconfig.Config) error) error {
	path := g.nodeconfigPath()
	c, err := nodeconfig.Load(path)
	if err != nil {
		return err
	}
	if err := fn(c); err != nil {
		return err
	}
	return c.Save(path)
}

func (g *globals) editContext(fn func(*nodeconfig.Context)) error {
	return g.editConfig(func(c *nodeconfig.Config) error {
		name, ctx, err := c.Current(g.context)
		if err != nil {
			if errors.Is(err, nodeconfig.ErrNoContext) {
				return fmt.Errorf("%w (merge one with 'nodectl config merge')", err)
			}
			return err
		}
		fn(ctx)
		fmt.Fprintf(g.stdout, "context %q updated\n", name)
		return nil
	})
}

func splitArgs(args []string) []string {
	var out []string
	for _, a := range args {
		for _, p := range strings.Split(a, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
