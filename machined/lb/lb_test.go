package lb

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// upstreamServer answers every connection with its name and echoes.
type upstreamServer struct {
	name string
	ln   net.Listener
}

func startUpstream(t *testing.T, addr, name string) *upstreamServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return serveUpstream(t, ln, name)
}

// serveUpstream answers every connection on ln with name, then echoes.
func serveUpstream(t *testing.T, ln net.Listener, name string) *upstreamServer {
	s := &upstreamServer{name: name, ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.WriteString(c, name+"\n")
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func startBalancer(t *testing.T, upstreams []string) (*Balancer, string) {
	t.Helper()
	b, addr, stop := runBalancer(t, upstreams)
	t.Cleanup(func() {
		if err := stop(5 * time.Second); err != nil {
			t.Error(err)
		}
	})
	return b, addr
}

// runBalancer starts a balancer; stop cancels it and waits up to a bound
// for Run to return.
func runBalancer(t *testing.T, upstreams []string) (*Balancer, string, func(time.Duration) error) {
	t.Helper()
	b := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	b.SetUpstreams(upstreams)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, ln) }()
	stop := func(bound time.Duration) error {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("Run: %w", err)
			}
			return nil
		case <-time.After(bound):
			return fmt.Errorf("Run did not return within %s", bound)
		}
	}
	return b, ln.Addr().String(), stop
}

// through connects through the balancer and returns the upstream's name,
// checking that bytes flow both ways.
func through(t *testing.T, addr string) (string, time.Duration, error) {
	t.Helper()
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	name, err := r.ReadString('\n')
	if err != nil {
		return "", time.Since(start), err
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return "", 0, err
	}
	echo, err := r.ReadString('\n')
	if err != nil || echo != "ping\n" {
		return "", 0, err
	}
	return strings.TrimSpace(name), time.Since(start), nil
}

// TestFailover: with one upstream killed, every new connection still gets
// a working upstream at once (never a hang or an error), and the dead one is
// marked down within a second.
func TestFailover(t *testing.T) {
	a := startUpstream(t, "127.0.0.61:0", "a")
	bsrv := startUpstream(t, "127.0.0.62:0", "b")
	b, addr := startBalancer(t, []string{a.ln.Addr().String(), bsrv.ln.Addr().String()})
	seen := map[string]bool{}
	for range 10 {
		name, _, err := through(t, addr)
		if err != nil {
			t.Fatal(err)
		}
		seen[name] = true
	}
	if len(seen) == 0 {
		t.Fatal("no connection went through")
	}
	// Kill whichever upstream is preferred now.
	first := b.Upstreams()[0].Addr
	victim, other := a, bsrv
	if first == bsrv.ln.Addr().String() {
		victim, other = bsrv, a
	}
	victim.ln.Close()
	killed := time.Now()
	servedByOther(t, addr, other.name, 20)
	t.Logf("dead upstream marked down %s after the kill", waitMarkedDown(t, b, victim.ln.Addr().String(), killed).Round(time.Millisecond))
}

// servedByOther checks that n connections through the balancer at addr
// each reach the upstream named other within a second.
func servedByOther(t *testing.T, addr, other string, n int) {
	t.Helper()
	for i := range n {
		name, took, err := through(t, addr)
		if err != nil {
			t.Fatalf("connection %d after the fault failed: %v", i, err)
		}
		if name != other {
			t.Fatalf("connection %d went to %q, want the live upstream %q", i, name, other)
		}
		if took > time.Second {
			t.Fatalf("connection %d took %s: a client waited on the failed upstream", i, took)
		}
	}
}

// waitMarkedDown waits until the balancer marks upstream down and returns
// how long after since that took.
func waitMarkedDown(t *testing.T, b *Balancer, upstream string, since time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, u := range b.Upstreams() {
			if u.Addr == upstream && !u.Healthy {
				return time.Since(since)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("upstream %s never marked down: %+v", upstream, b.Upstreams())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNoUpstreamClosesAtOnce: without a reachable upstream the client's
// connection is closed promptly, not left hanging.
func TestNoUpstreamClosesAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.63:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	_, addr := startBalancer(t, []string{dead})
	_, took, err := through(t, addr)
	if err == nil {
		t.Fatal("a connection went through with no upstream alive")
	}
	if took > 2*time.Second {
		t.Fatalf("the client waited %s before its connection was closed", took)
	}
}

func TestHosts(t *testing.T) {
	got := Hosts([]string{"10.5.0.2", "10.5.0.3:2379", "10.5.0.2", ""}, "6443")
	want := []string{"10.5.0.2:6443", "10.5.0.3:6443"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Hosts = %v, want %v", got, want)
	}
}

// TestStopClosesOpenConnections: a balancer told to stop returns while a
// client still holds a connection through it (a long watch), and that
// connection is closed.
func TestStopClosesOpenConnections(t *testing.T) {
	up := startUpstream(t, "127.0.0.64:0", "up")
	_, addr, stop := runBalancer(t, []string{up.ln.Addr().String()})
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("no answer through the balancer: %v", err)
	}
	if err := stop(5 * time.Second); err != nil {
		t.Fatalf("with a connection open: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("the client's connection is still open after the balancer stopped")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the client's connection was left open (read timed out)")
	}
}
