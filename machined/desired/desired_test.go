package desired

import (
	"context"
	"testing"
	"time"

	"github.com/ballast-os/ballast/pkg/config"
)

func TestWatch(t *testing.T) {
	d := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 10)
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Watch(ctx, func(_ context.Context, c *config.Config) {
			got <- c.Cluster.Name
			<-release
		})
	}()
	next := func() string {
		t.Helper()
		select {
		case n := <-got:
			return n
		case <-time.After(10 * time.Second):
			t.Fatal("watcher not called")
			return ""
		}
	}
	cfg := func(name string) *config.Config { c := &config.Config{}; c.Cluster.Name = name; return c }

	// Nothing is applied before the first config.
	select {
	case n := <-got:
		t.Fatalf("called with %q before any config", n)
	case <-time.After(50 * time.Millisecond):
	}
	d.Set(cfg("a"))
	if n := next(); n != "a" {
		t.Fatalf("got %q, want a", n)
	}
	// Two changes while the watcher is busy coalesce into one call with
	// the newest config.
	d.Set(cfg("b"))
	d.Set(cfg("c"))
	release <- struct{}{}
	if n := next(); n != "c" {
		t.Fatalf("got %q, want the newest config c", n)
	}
	close(release)
	select {
	case n := <-got:
		t.Fatalf("extra call with %q", n)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return when its context ended")
	}
}

func TestGetChannelClosesOnSet(t *testing.T) {
	d := New()
	c, changed := d.Get()
	if c != nil {
		t.Fatal("config before Set")
	}
	d.Set(&config.Config{})
	select {
	case <-changed:
	default:
		t.Fatal("channel not closed by Set")
	}
	if d.Current() == nil {
		t.Fatal("Current is nil after Set")
	}
}
