package logship

import "github.com/prometheus/client_golang/prometheus"

// metrics are the shipping counters, per destination.
type metrics struct {
	sent, dropped, failures *prometheus.CounterVec
	queued                  *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ballast_log_lines_sent_total",
			Help: "Log lines written to the destination."}, []string{"destination"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ballast_log_lines_dropped_total",
			Help: "Log lines dropped because the destination's queue was full (its receiver away or slow)."}, []string{"destination"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ballast_log_destination_failures_total",
			Help: "Failed connections and writes to the destination."}, []string{"destination"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ballast_log_queue_lines",
			Help: "Log lines waiting for the destination."}, []string{"destination"}),
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.dropped, m.failures, m.queued)
	}
	return m
}
