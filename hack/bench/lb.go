package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ballast-os/ballast/hack/netnstest"
	"github.com/ballast-os/ballast/machined/lb"
)

// The LB benchmark: two upstreams on loopback, Ballast's balancer and
// Debian's haproxy (TCP mode) in front of them with the same health-check
// interval, each in its own process.
const (
	lbUpstreamA   = "127.0.0.71:6443"
	lbUpstreamB   = "127.0.0.72:6443"
	lbBallast     = "127.0.0.70:7445"
	lbBallastMetr = "127.0.0.70:7446"
	lbHAProxy     = "127.0.0.69:7445"
	lbCheck       = 250 * time.Millisecond
)

type lbResult struct {
	name                 string
	p50, p99             time.Duration // connect + one request/response
	added50, added99     time.Duration // minus the direct figure
	rps                  float64
	markedDown           time.Duration // kill → the balancer reports the upstream down
	failures             int           // client connections that failed after the kill
	lastFailure          time.Duration
	directP50, directP99 time.Duration
}

// serveLB is the -lb-serve mode: Ballast's balancer as its own process.
func serveLB(listen, metricsAddr string, upstreams []string) error {
	reg := prometheus.NewRegistry()
	b := lb.New(lb.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CheckInterval: lbCheck, Registerer: reg})
	b.SetUpstreams(upstreams)
	ln, err := lb.Listen(context.Background(), listen)
	if err != nil {
		return err
	}
	go func() { _ = http.ListenAndServe(metricsAddr, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})) }()
	return b.Run(context.Background(), ln)
}

// rrServer answers each connection's line with its name.
type rrServer struct {
	name string
	ln   net.Listener
	mu   sync.Mutex
	conn map[net.Conn]bool
}

func startRR(addr, name string) (*rrServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &rrServer{name: name, ln: ln, conn: map[net.Conn]bool{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conn[c] = true
			s.mu.Unlock()
			go func() {
				defer func() { s.mu.Lock(); delete(s.conn, c); s.mu.Unlock(); c.Close() }()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					if _, err := io.WriteString(c, name+"\n"); err != nil {
						return
					}
				}
			}()
		}
	}()
	return s, nil
}

// kill closes the listener and every connection: the upstream is gone.
func (s *rrServer) kill() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conn {
		c.Close()
	}
}

// request connects to addr, sends one line and reads the answer.
func request(addr string) (string, time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "req\n"); err != nil {
		return "", 0, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), time.Since(start), err
}

func latencies(addr string, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for range n {
		_, d, err := request(addr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", addr, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func throughput(addr string, workers int, d time.Duration) float64 {
	var n atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if _, _, err := request(addr); err == nil {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

func measureLB(quick bool) ([]lbResult, error) {
	dir, err := os.MkdirTemp("", "ballast-bench-lb-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	n, dur := 3000, 4*time.Second
	if quick {
		n, dur = 500, 2*time.Second
	}
	var results []lbResult
	for _, which := range []string{"Ballast", "haproxy"} {
		a, err := startRR(lbUpstreamA, "a")
		if err != nil {
			return nil, err
		}
		b, err := startRR(lbUpstreamB, "b")
		if err != nil {
			a.kill()
			return nil, err
		}
		r, err := measureOneLB(which, dir, a, b, n, dur)
		a.kill()
		b.kill()
		if err != nil {
			return nil, err
		}
		results = append(results, r)
	}
	return results, nil
}

func measureOneLB(which, dir string, a, b *rrServer, n int, dur time.Duration) (lbResult, error) {
	r := lbResult{name: which}
	var cmd *exec.Cmd
	var addr string
	var down func() bool
	switch which {
	case "Ballast":
		addr = lbBallast
		self, _ := os.Executable()
		cmd = exec.Command(self, "-lb-serve", lbBallast, "-lb-metrics", lbBallastMetr, "-lb-upstreams", lbUpstreamA+","+lbUpstreamB)
		down = func() bool {
			resp, err := http.Get("http://" + lbBallastMetr + "/metrics")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return strings.Contains(string(body), `ballast_lb_upstream_healthy{upstream="`+lbUpstreamA+`"} 0`)
		}
	default:
		addr = lbHAProxy
		sock := filepath.Join(dir, "haproxy.sock")
		conf := fmt.Sprintf(`global
  maxconn 4000
  stats socket %s mode 600 level admin
defaults
  mode tcp
  timeout connect 300ms
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch
frontend fe
  bind %s
  default_backend be
backend be
  balance roundrobin
  server a %s check inter %dms fall 1 rise 1
  server b %s check inter %dms fall 1 rise 1
`, sock, lbHAProxy, lbUpstreamA, lbCheck.Milliseconds(), lbUpstreamB, lbCheck.Milliseconds())
		cf := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
			return r, err
		}
		cmd = exec.Command("haproxy", "-db", "-f", cf)
		down = func() bool {
			c, err := net.Dial("unix", sock)
			if err != nil {
				return false
			}
			defer c.Close()
			_, _ = io.WriteString(c, "show servers state be\n")
			body, _ := io.ReadAll(c)
			for _, l := range strings.Split(string(body), "\n") {
				f := strings.Fields(l)
				// be_id be_name srv_id srv_name srv_addr srv_op_state …
				if len(f) > 5 && f[3] == "a" {
					return f[5] == "0"
				}
			}
			return false
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, err := request(addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("%s does not answer on %s", which, addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * lbCheck) // both upstreams checked
	direct, err := latencies(lbUpstreamA, n)
	if err != nil {
		return r, err
	}
	via, err := latencies(addr, n)
	if err != nil {
		return r, err
	}
	r.directP50, r.directP99 = netnstest.Quantile(direct, 0.5), netnstest.Quantile(direct, 0.99)
	r.p50, r.p99 = netnstest.Quantile(via, 0.5), netnstest.Quantile(via, 0.99)
	r.added50, r.added99 = r.p50-r.directP50, r.p99-r.directP99
	r.rps = throughput(addr, 8, dur)

	// Kill upstream a while a client opens a connection every 5 ms.
	stop := make(chan struct{})
	var mu sync.Mutex
	var fails []time.Time
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if _, _, err := request(addr); err != nil {
				mu.Lock()
				fails = append(fails, time.Now())
				mu.Unlock()
			}
		}
	})
	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	a.kill()
	for !down() {
		if time.Since(killed) > 10*time.Second {
			close(stop)
			wg.Wait()
			return r, fmt.Errorf("%s never marked the killed upstream down", which)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.markedDown = time.Since(killed)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	r.failures = len(fails)
	if len(fails) > 0 {
		r.lastFailure = fails[len(fails)-1].Sub(killed)
	}
	fmt.Printf("%s: connect+request p50 %s p99 %s (direct %s / %s), %.0f req/s, killed upstream down after %s, %d client failures\n",
		which, r.p50, r.p99, r.directP50, r.directP99, r.rps, r.markedDown.Round(time.Millisecond), r.failures)
	return r, nil
}
