package vip

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type vipMetrics struct {
	holder    prometheus.Gauge
	takeovers *prometheus.CounterVec
	takeTime  prometheus.Histogram
}

func newMetrics(r prometheus.Registerer) *vipMetrics {
	m := &vipMetrics{
		holder: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ballast_vip_holder", Help: "Whether this node holds the VIP (1) or not (0)."}),
		takeovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ballast_vip_acquisitions_total",
			Help: "Times this node took the VIP, by how: free (no claim), handover (the holder resigned), takeover (the holder stopped renewing), restart."}, []string{"via"}),
		takeTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ballast_vip_take_seconds",
			Help:    "From the last sign of the previous holder (or the start of the claim) to the address being added here.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 2.5, 3, 5}}),
	}
	if r != nil {
		r.MustRegister(m.holder, m.takeovers, m.takeTime)
	}
	return m
}

func (m *vipMetrics) took(via string, d time.Duration) {
	m.holder.Set(1)
	m.takeovers.WithLabelValues(via).Inc()
	m.takeTime.Observe(d.Seconds())
}
