// Package metrics serves the node's metrics in the Prometheus exposition
// format through prometheus/client_golang: the state, health and restarts of
// every supervised service, build info, the Go runtime and process, the
// embedded etcd's own etcd_* metrics (registered by etcd with the default
// registry), and whatever collectors other parts of the agent add.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/version"
)

// Source lists the services to report.
type Source interface {
	List() []supervisor.Status
}

// Registry holds the agent's own collectors; Gatherer adds the default
// registry, where etcd and the Go and process collectors live.
type Registry struct {
	*prometheus.Registry
}

// NewRegistry returns a registry with the service and build collectors.
func NewRegistry(src Source) *Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(serviceCollector{src: src})
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "ballast_build_info",
		Help:        "Build of machined (always 1).",
		ConstLabels: prometheus.Labels{"version": version.Version, "commit": version.GitCommit, "go": runtime.Version()},
	})
	build.Set(1)
	r.MustRegister(build)
	return &Registry{Registry: r}
}

// Gatherer gathers the agent's collectors and the default registry's.
func (r *Registry) Gatherer() prometheus.Gatherer {
	return prometheus.Gatherers{r.Registry, prometheus.DefaultGatherer}
}

var (
	descUp             = prometheus.NewDesc("ballast_service_up", "Whether the service is running (1) or not (0).", []string{"service", "state"}, nil)
	descHealthy        = prometheus.NewDesc("ballast_service_healthy", "Health check result (1 healthy, 0 unhealthy; absent when unknown).", []string{"service"}, nil)
	descRestarts       = prometheus.NewDesc("ballast_service_restarts_total", "Restarts of the service since machined started.", []string{"service"}, nil)
	descHealthRestarts = prometheus.NewDesc("ballast_service_health_restarts_total",
		"Runs of the service ended because its health check failed its threshold of times in a row.", []string{"service"}, nil)
)

// serviceCollector reads the supervisor at scrape time.
type serviceCollector struct{ src Source }

func (serviceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descUp
	ch <- descHealthy
	ch <- descRestarts
	ch <- descHealthRestarts
}

func (c serviceCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.src.List() {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, b2f(s.State == supervisor.StateRunning), s.ID, strings.ToLower(string(s.State)))
		if s.Healthy != nil {
			ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, b2f(*s.Healthy), s.ID)
		}
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(s.Restarts), s.ID)
		ch <- prometheus.MustNewConstMetric(descHealthRestarts, prometheus.CounterValue, float64(s.HealthRestarts), s.ID)
	}
}

// Serve serves /metrics from g on ln until ctx ends, and /healthz (200
// "ok": the endpoint serves) for probes that need not render every metric.
func Serve(ctx context.Context, ln net.Listener, g prometheus.Gatherer) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve metrics: %w", err)
	}
}

// Probe checks that a metrics endpoint answers (its /healthz: a scrape
// renders and compresses every metric, ~1 MB of garbage each time).
func Probe(ctx context.Context, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe metrics: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe metrics: status %s", resp.Status)
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
