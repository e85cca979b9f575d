package etcd

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
)

// TestAddressFollower: a new address reaches the manager only once it has
// been read twice in a row; a passing blip, the loopback address and an
// unconfigured node change nothing.
func TestAddressFollower(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	m := testManager(clk)
	m.SetAddress("cp1", "10.5.0.2")
	var mu sync.Mutex
	readings := []string{"10.5.0.9", "10.5.0.2", "", "127.0.0.1", "127.0.0.1", "10.5.0.7", "10.5.0.7"}
	f := &AddressFollower{Manager: m, Clock: clk, Node: func() (string, string, bool) {
		mu.Lock()
		defer mu.Unlock()
		if len(readings) == 0 {
			return "cp1", "10.5.0.7", true
		}
		ip := readings[0]
		readings = readings[1:]
		return "cp1", ip, ip != ""
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, io.Discard) }()
	want := []string{"10.5.0.2", "10.5.0.2", "10.5.0.2", "10.5.0.2", "10.5.0.2", "10.5.0.2", "10.5.0.7"}
	for i, w := range want {
		clk.BlockUntil(1)
		clk.Advance(AddressPoll)
		// The reading is taken after the tick; wait until it is consumed.
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			left := len(readings)
			mu.Unlock()
			if left <= len(want)-1-i || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		clk.BlockUntil(1) // the pass is over: the follower waits again
		if _, ip := m.Address(); ip != w {
			t.Fatalf("after reading %d: the manager has %s, want %s", i+1, ip, w)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
