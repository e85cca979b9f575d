// Package metrics serves the node's metrics in the Prometheus text format:
// the state, health and restarts of every supervised service, and build info.
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

	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/version"
)

// Source lists the services to report.
type Source interface {
	List() []supervisor.Status
}

// Serve serves /metrics on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, src Source) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		Write(w, src)
	})
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

// Write renders the metrics of src.
func Write(w io.Writer, src Source) {
	fmt.Fprintln(w, "# HELP ballast_build_info Build of machined.")
	fmt.Fprintln(w, "# TYPE ballast_build_info gauge")
	fmt.Fprintf(w, "ballast_build_info{version=%q,commit=%q,go=%q} 1\n", version.Version, version.GitCommit, runtime.Version())
	services := src.List()
	fmt.Fprintln(w, "# HELP ballast_service_up Whether the service is running (1) or not (0).")
	fmt.Fprintln(w, "# TYPE ballast_service_up gauge")
	for _, s := range services {
		fmt.Fprintf(w, "ballast_service_up{service=%q,state=%q} %d\n", s.ID, strings.ToLower(string(s.State)), b2i(s.State == supervisor.StateRunning))
	}
	fmt.Fprintln(w, "# HELP ballast_service_healthy Health check result (1 healthy, 0 unhealthy; absent when unknown).")
	fmt.Fprintln(w, "# TYPE ballast_service_healthy gauge")
	for _, s := range services {
		if s.Healthy != nil {
			fmt.Fprintf(w, "ballast_service_healthy{service=%q} %d\n", s.ID, b2i(*s.Healthy))
		}
	}
	fmt.Fprintln(w, "# HELP ballast_service_restarts_total Restarts of the service since machined started.")
	fmt.Fprintln(w, "# TYPE ballast_service_restarts_total counter")
	for _, s := range services {
		fmt.Fprintf(w, "ballast_service_restarts_total{service=%q} %d\n", s.ID, s.Restarts)
	}
	fmt.Fprintln(w, "# HELP go_goroutines Number of goroutines.")
	fmt.Fprintln(w, "# TYPE go_goroutines gauge")
	fmt.Fprintf(w, "go_goroutines %d\n", runtime.NumGoroutine())
}

// Probe checks that a metrics endpoint answers.
func Probe(ctx context.Context, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
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

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
