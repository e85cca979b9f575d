package logship

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
)

// Reconnect backoff of a TCP destination.
const (
	minBackoff  = 100 * time.Millisecond
	maxBackoff  = 5 * time.Second
	dialTimeout = 3 * time.Second
	// writeTimeout bounds one write: a receiver that stops reading costs a
	// reconnect, not a stuck sender.
	writeTimeout = 5 * time.Second
)

// destination is one receiver: a bounded queue of encoded lines and the
// goroutine that writes them.
type destination struct {
	endpoint        string
	network, addr   string
	log             *slog.Logger
	m               *metrics
	limit           int
	cancel          context.CancelFunc
	mu              sync.Mutex
	queue           [][]byte
	wake            chan struct{}
	stopped, closed chan struct{}
}

func newDestination(endpoint string, limit int, m *metrics, log *slog.Logger) (*destination, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "tcp" && u.Scheme != "udp") || u.Host == "" {
		return nil, fmt.Errorf("%q is not tcp://HOST:PORT or udp://HOST:PORT", endpoint)
	}
	return &destination{endpoint: endpoint, network: u.Scheme, addr: u.Host, log: log.With("destination", endpoint), m: m,
		limit: limit, wake: make(chan struct{}, 1), stopped: make(chan struct{}), closed: make(chan struct{})}, nil
}

// enqueue adds a line, dropping the oldest when the queue is full.
func (d *destination) enqueue(line []byte) {
	d.mu.Lock()
	if len(d.queue) >= d.limit {
		d.queue = d.queue[1:]
		d.m.dropped.WithLabelValues(d.endpoint).Inc()
	}
	d.queue = append(d.queue, line)
	d.m.queued.WithLabelValues(d.endpoint).Set(float64(len(d.queue)))
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// take removes and returns up to n queued lines.
func (d *destination) take(n int) [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	n = min(n, len(d.queue))
	out := d.queue[:n:n]
	d.queue = d.queue[n:]
	d.m.queued.WithLabelValues(d.endpoint).Set(float64(len(d.queue)))
	return out
}

// putBack returns lines a failed write did not deliver to the queue's head
// (the oldest are dropped if that overflows it).
func (d *destination) putBack(lines [][]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := append(append([][]byte{}, lines...), d.queue...)
	if over := len(q) - d.limit; over > 0 {
		q = q[over:]
		d.m.dropped.WithLabelValues(d.endpoint).Add(float64(over))
	}
	d.queue = q
	d.m.queued.WithLabelValues(d.endpoint).Set(float64(len(d.queue)))
}

func (d *destination) stop() {
	select {
	case <-d.stopped:
	default:
		close(d.stopped)
	}
	<-d.closed
}

// run writes the queue to the receiver until stop or ctx ends.
func (d *destination) run(ctx context.Context, clk clock.Clock) {
	defer close(d.closed)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-d.stopped:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := minBackoff
	var conn net.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			dialer := net.Dialer{Timeout: dialTimeout}
			c, err := dialer.DialContext(ctx, d.network, d.addr)
			if err != nil {
				d.m.failures.WithLabelValues(d.endpoint).Inc()
				d.log.Debug("log destination unreachable", "error", err, "retry_in", backoff)
				select {
				case <-ctx.Done():
					return
				case <-clk.After(backoff):
				}
				backoff = min(2*backoff, maxBackoff)
				continue
			}
			conn, backoff = c, minBackoff
		}
		lines := d.take(256)
		if len(lines) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-d.wake:
			}
			continue
		}
		if err := d.write(conn, lines); err != nil {
			d.m.failures.WithLabelValues(d.endpoint).Inc()
			d.log.Debug("log destination write failed; reconnecting", "error", err)
			_ = conn.Close()
			conn = nil
			if d.network == "tcp" {
				d.putBack(lines) // a datagram that failed is gone
			}
		}
	}
}

// write sends lines: one datagram per line over UDP, one write over TCP.
func (d *destination) write(conn net.Conn, lines [][]byte) error {
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if d.network == "udp" {
		for i, l := range lines {
			if _, err := conn.Write(l); err != nil {
				d.m.sent.WithLabelValues(d.endpoint).Add(float64(i))
				return err
			}
		}
		d.m.sent.WithLabelValues(d.endpoint).Add(float64(len(lines)))
		return nil
	}
	bufs := net.Buffers(append([][]byte{}, lines...))
	if _, err := bufs.WriteTo(conn); err != nil {
		return err
	}
	d.m.sent.WithLabelValues(d.endpoint).Add(float64(len(lines)))
	return nil
}
