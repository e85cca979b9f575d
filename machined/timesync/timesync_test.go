package timesync

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/ntp"

	"github.com/ballast-os/ballast/machined/clock"
)

type adjustment struct {
	offset time.Duration
	step   bool
}

// TestSyncer: the first answer steps a clock that is far off (and reports
// it), a small offset is slewed, container mode only measures, and with no
// answer the boot wait ends after BootTimeout with the reason.
func TestSyncer(t *testing.T) {
	epoch := time.Date(1970, 1, 1, 0, 0, 5, 0, time.UTC) // a dead RTC
	for _, tc := range []struct {
		name      string
		offset    time.Duration
		answer    bool
		setClock  bool
		want      []adjustment
		wantSync  bool
		wantError string
		noServers bool
	}{
		{name: "an hour off is stepped", offset: time.Hour, answer: true, setClock: true, want: []adjustment{{time.Hour, true}}, wantSync: true},
		{name: "a dead RTC is stepped", offset: 56 * 365 * 24 * time.Hour, answer: true, setClock: true, want: []adjustment{{56 * 365 * 24 * time.Hour, true}}, wantSync: true},
		{name: "50 ms is slewed", offset: 50 * time.Millisecond, answer: true, setClock: true, want: []adjustment{{50 * time.Millisecond, false}}, wantSync: true},
		{name: "container mode only measures", offset: time.Hour, answer: true, wantSync: true},
		{name: "no answer: the boot wait ends", setClock: true, wantError: "no time server answered"},
		{name: "none configured: no wait", setClock: true, noServers: true, wantError: "no time server configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(epoch)
			var mu sync.Mutex
			var got []adjustment
			var stepped time.Duration
			s := New(Options{
				Servers: func() []string {
					if tc.noServers {
						return nil
					}
					return []string{"ntp.test"}
				},
				SetClock: tc.setClock,
				Clock:    clk,
				Query: func(server string) (*ntp.Response, error) {
					if !tc.answer {
						return nil, errors.New("i/o timeout")
					}
					return &ntp.Response{ClockOffset: tc.offset, RTT: time.Millisecond, Stratum: 2, Leap: ntp.LeapNoWarning,
						RootDelay: time.Millisecond, RootDispersion: time.Millisecond, ReferenceTime: epoch.Add(tc.offset), Time: epoch.Add(tc.offset)}, nil
				},
				Adjust: func(offset time.Duration, step bool) error {
					mu.Lock()
					defer mu.Unlock()
					got = append(got, adjustment{offset, step})
					return nil
				},
				OnStep: func(d time.Duration) { stepped = d },
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out bytes.Buffer
			done := make(chan struct{})
			go func() { defer close(done); _ = s.Run(ctx, &syncWriter{w: &out}) }()
			if !tc.answer && !tc.noServers {
				// Retried every second until BootTimeout.
				for i := 0; i < int(DefaultBootTimeout/time.Second)+1; i++ {
					clk.BlockUntil(1)
					clk.Advance(time.Second)
				}
			}
			wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer wcancel()
			if err := s.WaitFirst(wctx); err != nil {
				t.Fatalf("the first synchronization never ended: %v", err)
			}
			st := s.Status()
			if st.Synced != tc.wantSync || (tc.wantSync && st.Offset != tc.offset) || !strings.Contains(st.Error, tc.wantError) {
				t.Fatalf("status %+v", st)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) {
				t.Fatalf("adjustments %v, want %v", got, tc.want)
			}
			if len(tc.want) > 0 && tc.want[0].step && stepped != tc.offset {
				t.Fatalf("OnStep got %s", stepped)
			}
			cancel()
			<-done
			if !tc.answer && !tc.noServers && !strings.Contains(out.String(), "going on with the clock as it is") {
				t.Fatalf("no message about giving up:\n%s", out.String())
			}
		})
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
