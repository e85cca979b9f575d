package metrics

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ballast-os/ballast/machined/supervisor"
)

type fakeSource []supervisor.Status

func (f fakeSource) List() []supervisor.Status { return f }

// scrape fetches addr's page and parses it with Prometheus's own parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the page does not parse as Prometheus text: %v", err)
	}
	return families
}

// value returns the value of family's sample whose labels include want.
func value(t *testing.T, families map[string]*dto.MetricFamily, family string, want map[string]string) (float64, bool) {
	t.Helper()
	f, ok := families[family]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func TestServeParses(t *testing.T) {
	healthy := true
	src := fakeSource{
		{ID: "etcd", State: supervisor.StateRunning, Healthy: &healthy, Restarts: 2},
		{ID: "metrics", State: supervisor.StateStopped},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, NewRegistry(src).Gatherer()) }()
	if err := Probe(context.Background(), ln.Addr().String()); err != nil {
		t.Fatalf("probe: %v", err)
	}
	families := scrape(t, ln.Addr().String())
	tests := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"ballast_service_up", map[string]string{"service": "etcd", "state": "running"}, 1},
		{"ballast_service_up", map[string]string{"service": "metrics", "state": "stopped"}, 0},
		{"ballast_service_healthy", map[string]string{"service": "etcd"}, 1},
		{"ballast_service_restarts_total", map[string]string{"service": "etcd"}, 2},
		{"ballast_build_info", nil, 1},
	}
	for _, tt := range tests {
		got, ok := value(t, families, tt.family, tt.labels)
		if !ok || got != tt.want {
			t.Errorf("%s%v = %v (present %v), want %v", tt.family, tt.labels, got, ok, tt.want)
		}
	}
	if _, ok := value(t, families, "ballast_service_healthy", map[string]string{"service": "metrics"}); ok {
		t.Error("unknown health reported as a value")
	}
	// The default registry is served too: the Go runtime's collector.
	if _, ok := families["go_goroutines"]; !ok {
		t.Error("go_goroutines missing: the default registry is not gathered")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if err := Probe(context.Background(), ln.Addr().String()); err == nil {
		t.Fatal("probe succeeded after Serve returned")
	}
}
