package metrics

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/supervisor"
)

type fakeSource []supervisor.Status

func (f fakeSource) List() []supervisor.Status { return f }

func TestWriteAndServe(t *testing.T) {
	healthy := true
	src := fakeSource{
		{ID: "etcd", State: supervisor.StateRunning, Healthy: &healthy, Restarts: 2},
		{ID: "metrics", State: supervisor.StateStopped},
	}
	var b strings.Builder
	Write(&b, src)
	for _, want := range []string{
		`ballast_service_up{service="etcd",state="running"} 1`,
		`ballast_service_up{service="metrics",state="stopped"} 0`,
		`ballast_service_healthy{service="etcd"} 1`,
		`ballast_service_restarts_total{service="etcd"} 2`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), `ballast_service_healthy{service="metrics"}`) {
		t.Error("unknown health reported as a value")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, src) }()
	if err := Probe(context.Background(), ln.Addr().String()); err != nil {
		t.Fatalf("probe: %v", err)
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
