package nodectl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/gen"
	"github.com/ballast-os/ballast/pkg/health"
	"github.com/ballast-os/ballast/pkg/pki"
	"github.com/ballast-os/ballast/pkg/secrets"
)

// metricsPort is where every node serves its metrics (docs/architecture.md).
const metricsPort = "50001"

// Files gen prometheus writes beside prometheus.yml for mTLS targets; the
// config names them relative to itself, so the directory can move.
const (
	promCAFile   = "ballast-ca.crt"
	promCertFile = "ballast-reader.crt"
	promKeyFile  = "ballast-reader.key"
)

// promTarget is one node to scrape.
type promTarget struct {
	Address string // host (no port)
	Role    string
	MTLS    bool
}

func newGenPrometheusCmd(g *globals) *cobra.Command {
	var outDir, withSecrets string
	var cps, workers []string
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "prometheus",
		Short: "Write a Prometheus scrape config for the cluster's nodes (prometheus.yml, and an os:reader client certificate where metrics need mTLS)",
		Long: `Write OUTPUT-DIR/prometheus.yml: one scrape job for the nodes serving their
metrics (port 50001) over HTTP and one for those with machine.metrics.mtls,
each target labelled with its node, role and cluster (the context's name).
The nodes come from --control-plane-nodes and --worker-nodes, else the local
cluster named like the context, else -n; each node's config says whether it
asks for mTLS. For mTLS targets a client certificate of role os:reader is
issued from the secrets bundle (--with-secrets) and written beside the config
with the OS CA (key mode 0600); the paths in the config are relative to it.
Run it again after nodes join or leave, or a node's mtls changes.`,
		Example: `  nodectl gen prometheus --output-dir /etc/prometheus/ballast
  nodectl gen prometheus --output-dir prom --with-secrets secrets.yaml --control-plane-nodes 10.5.0.2,10.5.0.3,10.5.0.4 --worker-nodes 10.5.0.5
  prometheus --config.file prom/prometheus.yml`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if outDir == "" {
				return errors.New("--output-dir is required: where to write prometheus.yml")
			}
			if interval < time.Second {
				return fmt.Errorf("--scrape-interval %s: want at least 1s", interval)
			}
			name, nctx, err := g.loadNamedContext()
			if err != nil {
				return err
			}
			nodes, dial, err := g.clusterNodes(cmd.Context(), cps, workers)
			if err != nil {
				return err
			}
			targets, err := promTargets(cmd.Context(), nodes, dial)
			if err != nil {
				return err
			}
			needTLS := false
			for _, t := range targets {
				needTLS = needTLS || t.MTLS
			}
			if err := os.MkdirAll(outDir, 0o755); err != nil {
				return err
			}
			if needTLS {
				if withSecrets == "" {
					return errors.New("some nodes serve their metrics over mTLS (machine.metrics.mtls): pass --with-secrets secrets.yaml to issue Prometheus a client certificate of role os:reader")
				}
				if err := writeReaderCert(outDir, withSecrets, nctx.CA); err != nil {
					return err
				}
			}
			data, err := prometheusConfig(name, targets, interval)
			if err != nil {
				return err
			}
			path := filepath.Join(outDir, "prometheus.yml")
			if err := atomicfile.Write(path, data, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "wrote %s: %d node(s), %d over mTLS\n", path, len(targets), countMTLS(targets))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&outDir, "output-dir", "", "directory to write prometheus.yml (and the client certificate) to (required)")
	f.StringVar(&withSecrets, "with-secrets", "", "secrets bundle whose OS CA issues Prometheus's os:reader certificate (needed when a node asks for mTLS)")
	f.StringSliceVar(&cps, "control-plane-nodes", nil, "control-plane node addresses")
	f.StringSliceVar(&workers, "worker-nodes", nil, "worker node addresses")
	f.DurationVar(&interval, "scrape-interval", 15*time.Second, "how often Prometheus scrapes each node")
	return cmd
}

// promTargets reads each node's config for machine.metrics.mtls.
func promTargets(ctx context.Context, nodes []health.Node, dial health.Dialer) ([]promTarget, error) {
	var out []promTarget
	for _, n := range nodes {
		host := n.Address
		if h, _, err := net.SplitHostPort(n.Address); err == nil {
			host = h
		}
		mtls, err := nodeMetricsMTLS(ctx, n, dial)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Address, err)
		}
		out = append(out, promTarget{Address: host, Role: n.Role, MTLS: mtls})
	}
	return out, nil
}

func nodeMetricsMTLS(ctx context.Context, n health.Node, dial health.Dialer) (bool, error) {
	c, err := dial(n)
	if err != nil {
		return false, err
	}
	defer func(c *client.Client) { _ = c.Close() }(c)
	resp, err := c.GetConfiguration(ctx, &machine.GetConfigurationRequest{})
	if err != nil {
		return false, explain(err, n.Address)
	}
	cfg, err := config.Decode(resp.GetData())
	if err != nil {
		return false, fmt.Errorf("its config: %w", err)
	}
	return cfg.Machine.Metrics.MTLS, nil
}

// writeReaderCert issues an os:reader client certificate and writes it with
// the OS CA (from the context) beside prometheus.yml.
func writeReaderCert(dir, secretsPath, caB64 string) error {
	b, err := secrets.Load(secretsPath)
	if err != nil {
		return err
	}
	nc, err := gen.ClientConfig(b, "prometheus", nil, []string{pki.RoleReader})
	if err != nil {
		return err
	}
	cc := nc.Contexts["prometheus"]
	for _, f := range []struct {
		name, b64 string
		mode      os.FileMode
	}{{promCAFile, caB64, 0o644}, {promCertFile, cc.Crt, 0o644}, {promKeyFile, cc.Key, 0o600}} {
		data, err := pki.DecodeB64(f.b64)
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		if err := atomicfile.Write(filepath.Join(dir, f.name), data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func countMTLS(ts []promTarget) int {
	n := 0
	for _, t := range ts {
		if t.MTLS {
			n++
		}
	}
	return n
}

// The parts of Prometheus's configuration file gen prometheus writes.
type (
	promFile struct {
		Global        promGlobal      `yaml:"global"`
		ScrapeConfigs []promScrapeJob `yaml:"scrape_configs"`
	}
	promGlobal struct {
		ScrapeInterval string `yaml:"scrape_interval"`
	}
	promScrapeJob struct {
		JobName       string       `yaml:"job_name"`
		Scheme        string       `yaml:"scheme,omitempty"`
		TLSConfig     *promTLS     `yaml:"tls_config,omitempty"`
		StaticConfigs []promStatic `yaml:"static_configs"`
	}
	promTLS struct {
		CAFile   string `yaml:"ca_file"`
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
	}
	promStatic struct {
		Targets []string          `yaml:"targets"`
		Labels  map[string]string `yaml:"labels"`
	}
)

// prometheusConfig renders prometheus.yml: job ballast (HTTP) and job
// ballast-mtls (HTTPS with the os:reader certificate), one static config
// per node so each carries its own labels.
func prometheusConfig(cluster string, targets []promTarget, interval time.Duration) ([]byte, error) {
	plain := promScrapeJob{JobName: "ballast"}
	secure := promScrapeJob{JobName: "ballast-mtls", Scheme: "https",
		TLSConfig: &promTLS{CAFile: promCAFile, CertFile: promCertFile, KeyFile: promKeyFile}}
	for _, t := range targets {
		sc := promStatic{Targets: []string{net.JoinHostPort(t.Address, metricsPort)},
			Labels: map[string]string{"node": t.Address, "role": t.Role, "cluster": cluster}}
		if t.MTLS {
			secure.StaticConfigs = append(secure.StaticConfigs, sc)
		} else {
			plain.StaticConfigs = append(plain.StaticConfigs, sc)
		}
	}
	f := promFile{Global: promGlobal{ScrapeInterval: interval.String()}}
	for _, j := range []promScrapeJob{plain, secure} {
		if len(j.StaticConfigs) > 0 {
			f.ScrapeConfigs = append(f.ScrapeConfigs, j)
		}
	}
	var b bytes.Buffer
	b.WriteString("# Written by nodectl gen prometheus; run it again when nodes join or leave.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
