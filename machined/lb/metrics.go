package lb

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

type lbMetrics struct {
	healthy *prometheus.GaugeVec
	conns   *prometheus.CounterVec
	// perUpstream caches conns' children: no label hashing per connection.
	perUpstream sync.Map // upstream → prometheus.Counter
	active      prometheus.Gauge
	failed      prometheus.Counter
}

func newMetrics(r prometheus.Registerer) *lbMetrics {
	m := &lbMetrics{
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ballast_lb_upstream_healthy", Help: "Whether the API load balancer's upstream passes its checks (1) or not (0)."}, []string{"upstream"}),
		conns:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ballast_lb_connections_total", Help: "Connections the API load balancer sent to each upstream."}, []string{"upstream"}),
		active:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "ballast_lb_active_connections", Help: "Connections the API load balancer proxies now."}),
		failed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ballast_lb_refused_connections_total", Help: "Client connections closed because no upstream could be reached."}),
	}
	if r != nil {
		r.MustRegister(m.healthy, m.conns, m.active, m.failed)
	}
	return m
}

func (m *lbMetrics) health(addr string, ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	m.healthy.WithLabelValues(addr).Set(v)
}

func (m *lbMetrics) conn(addr string) {
	c, ok := m.perUpstream.Load(addr)
	if !ok {
		c, _ = m.perUpstream.LoadOrStore(addr, m.conns.WithLabelValues(addr))
	}
	c.(prometheus.Counter).Inc()
	m.active.Inc()
}

func (m *lbMetrics) forget(addr string) {
	m.healthy.DeleteLabelValues(addr)
	m.conns.DeleteLabelValues(addr)
	m.perUpstream.Delete(addr)
}
