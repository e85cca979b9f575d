package logship

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ballast-os/ballast/hack/rsyslogtest"
	"github.com/ballast-os/ballast/machined/desired"
	"github.com/ballast-os/ballast/machined/logs"
	"github.com/ballast-os/ballast/pkg/config"
)

// rsyslog is a real receiver (Debian's rsyslogd) on 127.0.0.1.
type rsyslog struct {
	*rsyslogtest.Receiver
	t *testing.T
}

func newRsyslog(t *testing.T) *rsyslog {
	return &rsyslog{Receiver: rsyslogtest.New(t, "127.0.0.1"), t: t}
}

func (r *rsyslog) start()            { r.Start() }
func (r *rsyslog) stop()             { r.Stop() }
func (r *rsyslog) tcp() string       { return r.TCP() }
func (r *rsyslog) udp() string       { return r.UDP() }
func (r *rsyslog) records() []record { return rsyslogtest.Records[record](r.Receiver) }

// waitFor waits until the received records include every msg.
func (r *rsyslog) waitFor(msgs ...string) []record {
	r.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		recs := r.records()
		missing := ""
		for _, m := range msgs {
			if !containsMsg(recs, m) {
				missing = m
				break
			}
		}
		if missing == "" {
			return recs
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("rsyslog did not receive %q; it has %d records", missing, len(recs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containsMsg(recs []record, msg string) bool {
	for _, r := range recs {
		if r.Msg == msg {
			return true
		}
	}
	return false
}

// shipper runs a Shipper over two services' buffers with the given
// destinations; set changes them live.
type shipper struct {
	s       *Shipper
	d       *desired.Config
	base    *config.Config
	kubelet *logs.Buffer
	etcd    *logs.Buffer
	reg     *prometheus.Registry
}

func startShipper(t *testing.T, queue int, endpoints ...string) *shipper {
	t.Helper()
	kubelet, err := logs.NewBuffer(logs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	etcd, err := logs.NewBuffer(logs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sh := &shipper{d: desired.New(), base: &config.Config{}, kubelet: kubelet, etcd: etcd, reg: prometheus.NewRegistry()}
	sh.set(endpoints...)
	sh.s = New(Options{Node: func() string { return "cp1" }, Desired: sh.d, QueueLines: queue, Registerer: sh.reg,
		Sources: func() []Source { return []Source{{"kubelet", kubelet}, {"etcd", etcd}} }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = sh.s.Run(ctx, io.Discard) }()
	t.Cleanup(func() { cancel(); <-done })
	return sh
}

func (sh *shipper) set(endpoints ...string) {
	cfg := sh.base.DeepCopy()
	for _, e := range endpoints {
		cfg.Machine.Logging.Destinations = append(cfg.Machine.Logging.Destinations, config.LogDestination{Endpoint: e})
	}
	sh.d.Set(cfg)
}

// waitShipping waits until the shipper follows the sources and has n
// destinations.
func (sh *shipper) waitShipping(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sh.s.mu.Lock()
		have := len(sh.s.dests)
		sh.s.mu.Unlock()
		if have == n {
			time.Sleep(100 * time.Millisecond) // the followers subscribe right after
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d destinations, want %d", have, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShipsJSONLinesOverTCPAndUDP(t *testing.T) {
	rs := newRsyslog(t)
	rs.start()
	sh := startShipper(t, 0, rs.tcp(), rs.udp())
	sh.waitShipping(t, 2)
	fmt.Fprintln(sh.kubelet, "W1207 12:00:00.000000 1 kubelet.go:1] a kubelet warning")
	fmt.Fprintln(sh.etcd, `{"level":"info","msg":"etcd says hi"}`)
	recs := rs.waitFor("W1207 12:00:00.000000 1 kubelet.go:1] a kubelet warning", `{"level":"info","msg":"etcd says hi"}`)
	n := 0
	for _, r := range recs {
		if r.Node != "cp1" || r.Time == "" {
			t.Fatalf("record %+v: want node cp1 and a time", r)
		}
		switch r.Service {
		case "kubelet":
			if r.Level != "warn" {
				t.Fatalf("kubelet record %+v: want level warn", r)
			}
			n++
		case "etcd":
			n++
		}
	}
	if n != 4 { // each line once over TCP and once over UDP
		t.Fatalf("%d records of the two lines, want 4 (TCP and UDP): %+v", n, recs)
	}
}

// TestReceiverAwayAndBack: lines written while the receiver is down wait in
// the queue up to its bound (the rest are counted as dropped) and arrive
// when it comes back; after it goes away again and comes back, shipping
// resumes on a new connection.
func TestReceiverAwayAndBack(t *testing.T) {
	rs := newRsyslog(t)
	sh := startShipper(t, 10, rs.tcp())
	sh.waitShipping(t, 1)
	for i := range 30 {
		fmt.Fprintf(sh.kubelet, "while away %d\n", i)
	}
	waitMetric(t, sh.reg, "ballast_log_lines_dropped_total", 20)
	rs.start()
	recs := rs.waitFor("while away 20", "while away 29")
	if containsMsg(recs, "while away 19") {
		t.Fatal("a line beyond the queue's bound arrived: the queue keeps the newest 10")
	}

	rs.stop()
	// Write until the shipper notices the connection is gone (plain TCP
	// has no acknowledgement: the first writes may vanish, like rsyslog's
	// or fluent-bit's).
	failures := metricValue(t, sh.reg, "ballast_log_destination_failures_total")
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, sh.reg, "ballast_log_destination_failures_total") == failures {
		if time.Now().After(deadline) {
			t.Fatal("the shipper never noticed its receiver went away")
		}
		fmt.Fprintln(sh.kubelet, "probe")
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintln(sh.kubelet, "after the receiver came back")
	rs.start()
	rs.waitFor("after the receiver came back")
}

func TestDestinationsFollowTheConfigLive(t *testing.T) {
	rs := newRsyslog(t)
	rs.start()
	sh := startShipper(t, 0)
	sh.set(rs.tcp())
	sh.waitShipping(t, 1)
	fmt.Fprintln(sh.etcd, "shipped once added")
	rs.waitFor("shipped once added")
	sh.set()
	sh.waitShipping(t, 0)
	sent := metricValue(t, sh.reg, "ballast_log_lines_sent_total")
	fmt.Fprintln(sh.etcd, "not shipped once removed")
	time.Sleep(500 * time.Millisecond)
	if containsMsg(rs.records(), "not shipped once removed") || metricValue(t, sh.reg, "ballast_log_lines_sent_total") != sent {
		t.Fatal("a line was shipped after its destination was removed")
	}
}

func TestLevel(t *testing.T) {
	for line, want := range map[string]string{
		`time=2026-12-07T12:00:00Z level=WARN msg="x"`: "warn",
		`{"level":"error","msg":"x"}`:                  "error",
		"E1207 12:00:00.000000 1 x.go:1] boom":         "error",
		"I1207 12:00:00.000000 1 x.go:1] fine":         "info",
		"plain text":                                   "info",
		"Info: not klog":                               "info",
	} {
		if got := Level(line); got != want {
			t.Errorf("Level(%q) = %s, want %s", line, got, want)
		}
	}
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func waitMetric(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, reg, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, metricValue(t, reg, name), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
