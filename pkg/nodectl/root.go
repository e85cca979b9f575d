// Package nodectl implements the nodectl command line: one file per command
// group, sharing the global flags, target resolution and fan-out in this file.
package nodectl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/nodeconfig"
)

// globals are the flags every command shares.
type globals struct {
	nodes      []string
	endpoints  []string
	nodeconfig string
	context    string
	output     string
	stdout     io.Writer
	stderr     io.Writer
}

// Execute runs nodectl with os.Args and exits with its status.
func Execute() {
	os.Exit(Run(os.Args[1:], os.Stdout, os.Stderr))
}

// Run runs nodectl with args and returns the exit code. Errors are printed as
// one line on stderr.
func Run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "error:", oneLine(err))
		return 1
	}
	return 0
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "nodectl",
		Short: "nodectl manages Ballast nodes through their machine API",
		Long: `nodectl manages Ballast nodes through their machine API (gRPC with mutual TLS on port 50000).

Nodes are chosen with -n/--nodes (several nodes fan out; results are labelled by node).
Without -n, the context's nodes, then its endpoints, are used. nodectl dials every
node directly; -e/--endpoints sets the addresses used when no node is named.

Every node proves what it is with its certificate: control planes hold
os:node:controlplane certificates they mint themselves, workers os:node:worker
certificates a control plane issued for the address it saw them call from.
Endpoints and the targets of 'etcd' and 'bootstrap' must be control planes: a
worker's certificate is refused there.`,
		Example: `  nodectl gen config demo https://10.5.0.2:6443
  nodectl apply-config --insecure -n 10.5.0.2 --file controlplane.yaml
  nodectl --nodeconfig ./nodeconfig -n 10.5.0.2 services`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// An empty -n (say, from an unset shell variable) must not fall
		// back to every node of the context.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range []struct {
				name string
				list []string
			}{{"nodes", g.nodes}, {"endpoints", g.endpoints}} {
				if cmd.Flags().Changed(f.name) && len(f.list) == 0 {
					return fmt.Errorf("--%s was given but names no node", f.name)
				}
				for _, n := range f.list {
					if strings.TrimSpace(n) == "" {
						return fmt.Errorf("--%s has an empty entry: %q", f.name, strings.Join(f.list, ","))
					}
				}
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringSliceVarP(&g.nodes, "nodes", "n", nil, "target nodes, host or host:port (comma-separated or repeated)")
	pf.StringSliceVarP(&g.endpoints, "endpoints", "e", nil, "endpoints to use when no node is given (overrides the context)")
	pf.StringVar(&g.nodeconfig, "nodeconfig", "", "client config file (default $NODECONFIG or ~/.nodectl/config)")
	pf.StringVar(&g.context, "context", "", "context to use instead of the current one")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table, json or yaml")
	root.AddCommand(
		newGenCmd(g), newApplyConfigCmd(g), newVersionCmd(g), newGetCmd(g),
		newServicesCmd(g), newServiceCmd(g), newLogsCmd(g), newDmesgCmd(g), newEventsCmd(g), newSupportCmd(g), newDashboardCmd(g),
		newRebootCmd(g), newShutdownCmd(g), newResetCmd(g), newConfigCmd(g),
		newBootstrapCmd(g), newEtcdCmd(g), newHealthCmd(g), newClusterCmd(g),
		newKubeconfigCmd(g), newContainersCmd(g), newUpgradeCmd(g), newRollbackCmd(g),
		newUpgradeK8sCmd(g),
	)
	root.AddCommand(newNodeToolCmds(g)...)
	root.InitDefaultCompletionCmd()
	return root
}

func (g *globals) nodeconfigPath() string {
	if g.nodeconfig != "" {
		return g.nodeconfig
	}
	return nodeconfig.DefaultPath()
}

// loadContext returns the selected nodeconfig context.
func (g *globals) loadContext() (*nodeconfig.Context, error) {
	_, ctx, err := g.loadNamedContext()
	return ctx, err
}

// loadNamedContext returns the selected nodeconfig context and its name.
func (g *globals) loadNamedContext() (string, *nodeconfig.Context, error) {
	path := g.nodeconfigPath()
	if _, err := os.Stat(path); err != nil {
		return "", nil, fmt.Errorf("nodeconfig %s does not exist: pass --nodeconfig FILE (gen config writes one) or set $NODECONFIG", path)
	}
	cfg, err := nodeconfig.Load(path)
	if err != nil {
		return "", nil, err
	}
	name, ctx, err := cfg.Current(g.context)
	if err != nil {
		return "", nil, fmt.Errorf("nodeconfig %s: %w", path, err)
	}
	return name, ctx, nil
}

// targets returns the nodes to act on: -n, else the context's nodes, else
// the endpoints (-e, else the context's).
func (g *globals) targets(ctx *nodeconfig.Context) ([]string, error) {
	switch {
	case len(g.nodes) > 0:
		return g.nodes, nil
	case ctx != nil && len(ctx.Nodes) > 0:
		return ctx.Nodes, nil
	case len(g.endpoints) > 0:
		return g.endpoints, nil
	case ctx != nil && len(ctx.Endpoints) > 0:
		return ctx.Endpoints, nil
	}
	return nil, errors.New("no nodes: pass -n/--nodes or set them with 'nodectl config node'")
}

// result is one node's outcome in a fan-out.
type result[T any] struct {
	node  string
	value T
	err   error
}

// fanOut dials every target with the nodeconfig's credentials and calls fn
// concurrently; results keep the order of the targets.
func fanOut[T any](cmd *cobra.Command, g *globals, fn func(ctx context.Context, c *client.Client) (T, error)) ([]result[T], error) {
	nodes, opts, err := g.dialTargets(cmd)
	if err != nil {
		return nil, err
	}
	return callAll(cmd.Context(), nodes, opts, fn), nil
}

// dialTargets returns the targets and how to dial each with the
// nodeconfig's credentials.
func (g *globals) dialTargets(cmd *cobra.Command) ([]string, func(node string) (client.Options, error), error) {
	nctx, err := g.loadContext()
	if err != nil {
		return nil, nil, err
	}
	nodes, err := g.targets(nctx)
	if err != nil {
		return nil, nil, err
	}
	endpoints := g.endpoints
	if len(endpoints) == 0 {
		endpoints = nctx.Endpoints
	}
	cpOnly := controlPlaneOnly(cmd)
	opts := func(node string) (client.Options, error) {
		o, err := client.FromContext(nctx, node)
		// A control plane is expected where the command acts on etcd, and
		// at the context's endpoints: a worker's certificate must not pass
		// for one there.
		o.RequireControlPlane = cpOnly || isEndpoint(endpoints, node)
		return o, err
	}
	return nodes, opts, nil
}

// annotationControlPlane marks commands that act on control-plane nodes only.
const annotationControlPlane = "ballast.dev/control-plane"

// controlPlaneOnly reports whether cmd or a parent is marked as acting on
// control-plane nodes only.
func controlPlaneOnly(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		if c.Annotations[annotationControlPlane] == "true" {
			return true
		}
	}
	return false
}

// isEndpoint reports whether node is one of the endpoints (ports ignored
// when one side names none).
func isEndpoint(endpoints []string, node string) bool {
	hp, err := client.HostPort(node)
	if err != nil {
		return false
	}
	for _, e := range endpoints {
		if ep, err := client.HostPort(e); err == nil && ep == hp {
			return true
		}
	}
	return false
}

// callAll dials each node with the options opts gives and calls fn on all
// of them concurrently.
func callAll[T any](ctx context.Context, nodes []string, opts func(node string) (client.Options, error), fn func(context.Context, *client.Client) (T, error)) []result[T] {
	results := make([]result[T], len(nodes))
	var wg sync.WaitGroup
	for i, node := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = result[T]{node: node}
			o, err := opts(node)
			if err != nil {
				results[i].err = err
				return
			}
			c, err := client.New(o)
			if err != nil {
				results[i].err = err
				return
			}
			defer c.Close()
			results[i].value, results[i].err = fn(ctx, c)
		}()
	}
	wg.Wait()
	return results
}

// render prints results: structured for -o json|yaml, else through table
// for the nodes that answered; failed nodes are reported either way.
func render[T proto.Message](g *globals, results []result[T], table func(node string, v T)) error {
	if g.output != "table" {
		if err := printResults(g, results); err != nil {
			return err
		}
		return reportErrors(g, results)
	}
	for _, r := range results {
		if r.err == nil {
			table(r.node, r.value)
		}
	}
	return reportErrors(g, results)
}

// reportErrors prints each failed node's error and returns a summary error
// when any node failed.
func reportErrors[T any](g *globals, results []result[T]) error {
	failed := 0
	for _, r := range results {
		if r.err != nil {
			failed++
			if len(results) > 1 {
				fmt.Fprintf(g.stderr, "%s: %s\n", r.node, oneLine(explain(r.err, r.node)))
			}
		}
	}
	switch {
	case failed == 0:
		return nil
	case len(results) == 1:
		return fmt.Errorf("%s: %s", results[0].node, oneLine(explain(results[0].err, results[0].node)))
	default:
		return fmt.Errorf("%d of %d nodes failed", failed, len(results))
	}
}
