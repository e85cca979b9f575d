package nodectl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/gen"
	"github.com/ballast-os/ballast/pkg/secrets"
)

func newGenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gen",
		Short: "Generate secrets, machine configs and client configs",
	}
	cmd.AddCommand(newGenConfigCmd(g), newGenSecretsCmd(g), newGenNodeconfigCmd(g), newGenPrometheusCmd(g))
	return cmd
}

func newGenConfigCmd(g *globals) *cobra.Command {
	var (
		outDir, withSecrets, k8sVersion string
		patches, cpPatches, wPatches    []string
		force                           bool
	)
	cmd := &cobra.Command{
		Use:   "config NAME ENDPOINT",
		Short: "Generate controlplane.yaml, worker.yaml, secrets.yaml and nodeconfig for a new cluster",
		Long: `Generate the machine configs of a cluster named NAME whose Kubernetes API is reached at
ENDPOINT (an https URL, usually a virtual IP or load balancer on port 6443).

Secrets are created once and written to secrets.yaml (mode 0600); pass --with-secrets
to reuse them. Patches are RFC 7396 merge patches (a YAML/JSON mapping) or RFC 6902
JSON patches (a list of operations), inline or from @file.`,
		Example: `  nodectl gen config demo https://10.5.0.2:6443
  nodectl gen config demo https://10.5.0.2:6443 --with-secrets secrets.yaml --output-dir _out/demo
  nodectl gen config demo https://10.5.0.2:6443 --config-patch '{"machine":{"network":{"nameservers":["10.5.0.1"]}}}'
  nodectl gen config demo https://10.5.0.2:6443 --config-patch-worker @worker-patch.yaml`,
		Args: exactArgs(2, "NAME ENDPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, endpoint := args[0], args[1]
			var bundle *secrets.Bundle
			var err error
			if withSecrets != "" {
				if bundle, err = secrets.Load(withSecrets); err != nil {
					return err
				}
			} else if bundle, err = secrets.Generate(); err != nil {
				return err
			}
			out, err := gen.Generate(gen.Options{
				ClusterName: name, Endpoint: endpoint, KubernetesVersion: k8sVersion, Secrets: bundle,
				Patches: patches, ControlPlanePatches: cpPatches, WorkerPatches: wPatches,
			})
			if err != nil {
				return err
			}
			if err := os.MkdirAll(outDir, 0o755); err != nil {
				return fmt.Errorf("create output directory: %w", err)
			}
			files := []string{"controlplane.yaml", "worker.yaml", "nodeconfig"}
			if withSecrets == "" {
				files = append(files, "secrets.yaml")
			}
			if !force {
				for _, f := range files {
					if _, err := os.Stat(filepath.Join(outDir, f)); err == nil {
						return fmt.Errorf("%s already exists (use --force to overwrite, or --output-dir)", filepath.Join(outDir, f))
					} else if !errors.Is(err, fs.ErrNotExist) {
						return err
					}
				}
			}
			if withSecrets == "" {
				if err := bundle.Save(filepath.Join(outDir, "secrets.yaml")); err != nil {
					return err
				}
			}
			// Machine configs hold keys: 0600 like every secret.
			if err := atomicfile.Write(filepath.Join(outDir, "controlplane.yaml"), out.ControlPlane, 0o600); err != nil {
				return err
			}
			if err := atomicfile.Write(filepath.Join(outDir, "worker.yaml"), out.Worker, 0o600); err != nil {
				return err
			}
			if err := out.NodeConfig.Save(filepath.Join(outDir, "nodeconfig")); err != nil {
				return err
			}
			for _, f := range files {
				fmt.Fprintf(g.stdout, "created %s\n", filepath.Join(outDir, f))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&outDir, "output-dir", ".", "directory to write the files to")
	f.StringVar(&withSecrets, "with-secrets", "", "reuse the secrets bundle in FILE (from 'nodectl gen secrets')")
	f.StringVar(&k8sVersion, "kubernetes-version", "", "Kubernetes version of the control plane (default: the pinned one)")
	f.StringArrayVar(&patches, "config-patch", nil, "patch for both configs, inline or @file (repeatable)")
	f.StringArrayVar(&cpPatches, "config-patch-control-plane", nil, "patch for controlplane.yaml only (repeatable)")
	f.StringArrayVar(&wPatches, "config-patch-worker", nil, "patch for worker.yaml only (repeatable)")
	f.BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

func newGenSecretsCmd(g *globals) *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:     "secrets",
		Short:   "Generate a secrets bundle (CAs, keys, tokens) for a new cluster",
		Example: "  nodectl gen secrets --output-file secrets.yaml",
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Stat(out); err == nil && !force {
				return fmt.Errorf("%s already exists (use --force to overwrite)", out)
			}
			b, err := secrets.Generate()
			if err != nil {
				return err
			}
			if err := b.Save(out); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "created %s\n", out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "output-file", "secrets.yaml", "file to write (mode 0600)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	return cmd
}

func newGenNodeconfigCmd(g *globals) *cobra.Command {
	var withSecrets, out, name string
	var roles, endpoints []string
	cmd := &cobra.Command{
		Use:   "nodeconfig",
		Short: "Issue a client config with a certificate for the given roles",
		Long: `Issue a nodeconfig whose client certificate carries the given roles
(os:admin, os:operator, os:reader, os:etcd:backup), signed by the OS CA in the secrets bundle.`,
		Example: `  nodectl gen nodeconfig --with-secrets secrets.yaml --roles os:reader --output reader.nodeconfig -e 10.5.0.2`,
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if withSecrets == "" {
				return errors.New("--with-secrets is required: the OS CA key signs the client certificate")
			}
			if out == "" {
				return errors.New("--output is required")
			}
			b, err := secrets.Load(withSecrets)
			if err != nil {
				return err
			}
			eps := endpoints
			if len(eps) == 0 {
				eps = g.endpoints
			}
			nc, err := gen.ClientConfig(b, name, eps, roles)
			if err != nil {
				return err
			}
			if err := nc.Save(out); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "created %s with roles %s\n", out, strings.Join(roles, ","))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&withSecrets, "with-secrets", "", "secrets bundle holding the OS CA (required)")
	f.StringSliceVar(&roles, "roles", nil, "roles of the certificate, comma-separated (required)")
	f.StringVar(&out, "output", "", "file to write (mode 0600, required)")
	f.StringVar(&name, "context-name", "ballast", "name of the context in the file")
	f.StringSliceVar(&endpoints, "endpoint", nil, "endpoints stored in the context (default: -e)")
	_ = cmd.MarkFlagRequired("roles")
	return cmd
}

// exactArgs is cobra.ExactArgs with a message that names the arguments.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == n {
			return nil
		}
		if n == 0 {
			return fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), args)
		}
		return fmt.Errorf("%s needs %s (got %d arguments); see --help", cmd.CommandPath(), names, len(args))
	}
}
