package etcd

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ballast-os/ballast/machined/clock"
)

// fakeCluster answers MemberPromote and MemberRemove with scripted errors,
// recording the fake time of each call.
type fakeCluster struct {
	clk   *clock.Fake
	errs  []error // one per call; the last repeats
	calls []time.Duration
	start time.Time
}

func (f *fakeCluster) next() error {
	f.calls = append(f.calls, f.clk.Now().Sub(f.start))
	i := min(len(f.calls)-1, len(f.errs)-1)
	return f.errs[i]
}

func (f *fakeCluster) MemberPromote(context.Context, uint64) (*clientv3.MemberPromoteResponse, error) {
	return nil, f.next()
}

func (f *fakeCluster) MemberRemove(context.Context, uint64) (*clientv3.MemberRemoveResponse, error) {
	return nil, f.next()
}

// drive runs fn while advancing the fake clock whenever fn waits on it.
func drive(t *testing.T, clk *clock.Fake, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	for {
		select {
		case err := <-done:
			return err
		default:
		}
		if clk.Pending() > 0 {
			clk.Advance(100 * time.Millisecond)
		} else {
			time.Sleep(time.Millisecond)
		}
	}
}

func testManager(clk clock.Clock) *Manager {
	return New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: clk})
}

// TestPromoteTiming: a learner that is not ready is retried with doubling
// delays capped at promoteMaxDelay; other errors are retried too; the
// learner is given up on after promoteTimeout; a learner another member
// promoted meanwhile is done. Typed etcd errors decide,
// not their text.
func TestPromoteTiming(t *testing.T) {
	notReady := rpctypes.ErrMemberLearnerNotReady
	tests := []struct {
		name      string
		errs      []error
		wantErr   bool
		wantCalls []time.Duration // the first calls' times, when given
	}{
		{"ready at once", []error{nil}, false, []time.Duration{0}},
		{"ready after catching up", []error{notReady, notReady, nil}, false,
			[]time.Duration{0, 200 * time.Millisecond, 600 * time.Millisecond}},
		{"delays are capped", []error{notReady, notReady, notReady, notReady, notReady, nil}, false,
			[]time.Duration{0, 200 * time.Millisecond, 600 * time.Millisecond, 1100 * time.Millisecond, 1600 * time.Millisecond, 2100 * time.Millisecond}},
		{"never ready", []error{notReady}, true, nil},
		{"promoted by another member meanwhile", []error{notReady, rpctypes.ErrMemberNotLearner}, false,
			[]time.Duration{0, 200 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			f := &fakeCluster{clk: clk, errs: tt.errs, start: clk.Now()}
			m := testManager(clk)
			err := drive(t, clk, func() error { return m.promote(context.Background(), f, 1) })
			if (err != nil) != tt.wantErr {
				t.Fatalf("promote = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				if !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) {
					t.Fatalf("error %v does not wrap the etcd error", err)
				}
				if last := f.calls[len(f.calls)-1]; last < promoteTimeout || last > promoteTimeout+promoteMaxDelay+time.Second {
					t.Fatalf("gave up at %s, want just after %s", last, promoteTimeout)
				}
				return
			}
			for i, want := range tt.wantCalls {
				// drive advances in 100ms steps: a call lands within one step.
				if got := f.calls[i]; got < want || got > want+100*time.Millisecond {
					t.Fatalf("call %d at %s, want %s (calls %v)", i, got, want, f.calls)
				}
			}
		})
	}
}

// TestRemoveRetriesOnlyUnhealthy: removal is retried while etcd reports the
// cluster unhealthy for reconfiguration, and not for other errors.
func TestRemoveRetriesOnlyUnhealthy(t *testing.T) {
	tests := []struct {
		name      string
		errs      []error
		wantErr   error
		wantCalls int
	}{
		{"removed", []error{nil}, nil, 1},
		{"unhealthy then removed", []error{rpctypes.ErrUnhealthy, rpctypes.ErrUnhealthy, nil}, nil, 3},
		{"not found is not retried", []error{rpctypes.ErrMemberNotFound}, rpctypes.ErrMemberNotFound, 1},
		{"unhealthy for good", []error{rpctypes.ErrUnhealthy}, rpctypes.ErrUnhealthy, int(removeTimeout/removeRetryDelay) + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			f := &fakeCluster{clk: clk, errs: tt.errs, start: clk.Now()}
			m := testManager(clk)
			err := drive(t, clk, func() error { return m.removeWithRetry(context.Background(), f, 1) })
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("removeWithRetry = %v, want %v", err, tt.wantErr)
			}
			if len(f.calls) != tt.wantCalls {
				t.Fatalf("%d calls, want %d", len(f.calls), tt.wantCalls)
			}
		})
	}
}

// TestPartialDataOfInterruptedJoin is the reproducer of a chaos finding: a
// learner killed after etcd created its backend but before it wrote its
// log left a member directory that counted as data, so the node started
// "from existing data" and failed forever looking for its cluster.
func TestPartialDataOfInterruptedJoin(t *testing.T) {
	tests := []struct {
		name        string
		files       []string
		data, parts bool
	}{
		{"nothing", nil, false, false},
		{"backend only (interrupted join)", []string{"member/snap/db"}, false, true},
		{"backend and log", []string{"member/snap/db", "member/wal/0000000000000000-0000000000000000.wal"}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			m := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DataDir: filepath.Join(dir, "etcd")})
			for _, f := range tt.files {
				p := filepath.Join(dir, "etcd", f)
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if m.hasData() != tt.data || m.hasPartialData() != tt.parts {
				t.Fatalf("hasData %v, hasPartialData %v; want %v, %v", m.hasData(), m.hasPartialData(), tt.data, tt.parts)
			}
		})
	}
}

func TestPeersAreMembers(t *testing.T) {
	members := []*etcdserverpb.Member{
		{PeerURLs: []string{"https://10.5.0.2:2380"}},
		{PeerURLs: []string{"https://10.5.0.3:2380"}},
	}
	for _, tc := range []struct {
		peers []string
		want  bool
	}{
		{[]string{"10.5.0.2", "10.5.0.3"}, true},
		{[]string{"10.5.0.2:2379", "10.5.0.3"}, true},
		{[]string{"10.5.0.2", "10.5.0.4"}, false},
		{nil, true},
	} {
		if got := peersAreMembers(tc.peers, members); got != tc.want {
			t.Errorf("peersAreMembers(%v) = %v, want %v", tc.peers, got, tc.want)
		}
	}
}
