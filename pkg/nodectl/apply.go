package nodectl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/config"
)

var applyModes = map[string]machine.ApplyMode{
	"auto":      machine.ApplyMode_AUTO,
	"no-reboot": machine.ApplyMode_NO_REBOOT,
	"staged":    machine.ApplyMode_STAGED,
	"try":       machine.ApplyMode_TRY,
}

func newApplyConfigCmd(g *globals) *cobra.Command {
	var (
		file, mode, fingerprint string
		insecure, dryRun        bool
		tryTimeout              time.Duration
		patches                 []string
	)
	cmd := &cobra.Command{
		Use:   "apply-config",
		Short: "Apply a machine config to nodes",
		Long: `Apply a machine config. The node validates it, persists it atomically and converges.

Modes: auto (live when possible, reboot when needed), no-reboot (fail if a reboot is
needed), staged (applied at the next reboot), try (live, rolled back after --timeout
unless applied again). --dry-run shows the diff (secrets redacted) without changing anything.

A node without a config is in maintenance mode: use --insecure (and, to be sure it is
the right node, --cert-fingerprint with the fingerprint the node printed).`,
		Example: `  nodectl apply-config --insecure -n 10.5.0.2 --file controlplane.yaml
  nodectl apply-config -n 10.5.0.2 --file controlplane.yaml --dry-run
  nodectl apply-config -n 10.5.0.2 --file controlplane.yaml --mode try --timeout 2m`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if file == "" {
				return errors.New("--file is required")
			}
			m, ok := applyModes[mode]
			if !ok {
				return fmt.Errorf("unknown --mode %q: use auto, no-reboot, staged or try", mode)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("read config: %w", err)
			}
			if len(patches) > 0 {
				if data, err = config.ApplyPatches(data, patches); err != nil {
					return err
				}
			}
			// Validate locally first: the same rules, with the file's line numbers.
			if _, err := config.Load(data); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			req := &machine.ApplyConfigurationRequest{Data: data, Mode: m, DryRun: dryRun}
			if tryTimeout > 0 {
				req.TryTimeout = durationpb.New(tryTimeout)
			}
			call := func(ctx context.Context, c *client.Client) (*machine.ApplyConfigurationResponse, error) {
				return c.ApplyConfiguration(ctx, req)
			}
			var results []result[*machine.ApplyConfigurationResponse]
			if insecure {
				results, err = insecureFanOut(cmd.Context(), g, fingerprint, call)
			} else {
				results, err = fanOut(cmd, g, call)
			}
			if err != nil {
				return err
			}
			return render(g, results, func(node string, v *machine.ApplyConfigurationResponse) {
				prefix := ""
				if len(results) > 1 {
					prefix = node + ": "
				}
				if dryRun && v.GetDiff() != "" {
					fmt.Fprint(g.stdout, v.GetDiff())
				}
				for _, w := range v.GetWarnings() {
					fmt.Fprintf(g.stderr, "%swarning: %s\n", prefix, w)
				}
				fmt.Fprintf(g.stdout, "%s%s\n", prefix, v.GetModeDetails())
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "machine config file (required)")
	f.StringVarP(&mode, "mode", "m", "auto", "apply mode: auto, no-reboot, staged or try")
	f.BoolVar(&dryRun, "dry-run", false, "validate and show the diff without applying")
	f.DurationVar(&tryTimeout, "timeout", 0, "how long a --mode try config stays before it is rolled back (default 1m)")
	f.BoolVarP(&insecure, "insecure", "i", false, "apply to a node in maintenance mode (no client certificate)")
	f.StringVar(&fingerprint, "cert-fingerprint", "", "with --insecure: the maintenance certificate fingerprint the node printed")
	f.StringArrayVarP(&patches, "config-patch", "p", nil, "patch the config before applying, inline or @file (repeatable)")
	return cmd
}

// insecureFanOut calls nodes in maintenance mode: no client certificate, the
// server certificate pinned by fingerprint when given.
func insecureFanOut[T any](ctx context.Context, g *globals, fingerprint string, fn func(context.Context, *client.Client) (T, error)) ([]result[T], error) {
	nodes := g.nodes
	if len(nodes) == 0 {
		nodes = g.endpoints
	}
	if len(nodes) == 0 {
		return nil, errors.New("--insecure needs the node's address: pass -n/--nodes")
	}
	if fingerprint != "" && len(nodes) > 1 {
		return nil, errors.New("--cert-fingerprint pins one node's certificate: pass a single node")
	}
	opts := func(node string) (client.Options, error) {
		return client.Options{Address: node, Insecure: true, Fingerprint: strings.TrimSpace(fingerprint)}, nil
	}
	return callAll(ctx, nodes, opts, fn), nil
}
