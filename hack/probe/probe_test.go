package probe

import (
	"errors"
	"testing"
	"time"
)

func TestGap(t *testing.T) {
	// Calls 0-1 succeed, 2-9 fail, then success again: the longest gap
	// spans the failures (about 9 intervals), and every call is counted.
	g := StartGap(10*time.Millisecond, func(i int) error {
		if i >= 2 && i < 10 {
			return errors.New("down")
		}
		return nil
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, _, _ := g.Result()
		if ok >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	g.Stop()
	ok, failed, longest := g.Result()
	if failed != 8 || ok < 5 {
		t.Errorf("ok %d, failed %d: want 8 failures and at least 5 successes", ok, failed)
	}
	if longest < 80*time.Millisecond {
		t.Errorf("longest gap %s: want at least the 9 intervals around the failures", longest)
	}
	g.Stop() // a second Stop is harmless
	f := g.Failures()
	if len(f) != 8 || f[0].Err != "down" || f[0].At <= 0 || f[7].At <= f[0].At {
		t.Errorf("failures %v: want the 8 in order, with their errors and start times", f)
	}
}
