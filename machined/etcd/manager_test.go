package etcd

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/desired"
	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/events"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/gen"
	"github.com/ballast-os/ballast/pkg/secrets"
)

// TestSingleMemberLifecycle runs a real embedded etcd on a loopback address:
// bootstrap, health, refusals, snapshot, the quorum guard on the last
// member, and recovery from the snapshot.
func TestSingleMemberLifecycle(t *testing.T) {
	const ip = "127.0.0.31"
	b, err := secrets.Generate()
	if err != nil {
		t.Fatal(err)
	}
	out, err := gen.Generate(gen.Options{ClusterName: "unit", Endpoint: "https://" + ip + ":6443", Secrets: b})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(out.ControlPlane)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	want := desired.New()
	want.Set(cfg)
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	ring := events.New(100, clk)
	m := New(Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Name: "unit-cp1", AdvertiseIP: ip,
		DataDir: filepath.Join(dir, "etcd"), PKIDir: filepath.Join(dir, "pki"), SnapshotDir: filepath.Join(dir, "snaps"),
		Desired: want, Clock: clk, Events: ring,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})

	if _, err := m.MemberStatus(ctx); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("status before bootstrap: %v, want ErrNotRunning", err)
	}
	if err := m.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	if err := m.Bootstrap(ctx); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second bootstrap: %v, want ErrAlreadyExists", err)
	}
	waitHealthy(t, m)
	st, err := m.MemberStatus(ctx)
	if err != nil || st.Leader != st.Header.MemberId {
		t.Fatalf("status %+v %v: a single member leads itself", st, err)
	}
	// The bootstrap and the member's own leadership are machine events.
	waitEvent(t, ring, events.EtcdMember, "action", "bootstrapped")
	waitEvent(t, ring, events.EtcdLeader, "leader", "unit-cp1")
	if got := m.rememberedID(); got != st.Header.MemberId {
		t.Fatalf("recorded member ID %x, want %x", got, st.Header.MemberId)
	}
	members, err := m.Members(ctx)
	if err != nil || len(members.Members) != 1 || members.Members[0].Name != "unit-cp1" {
		t.Fatalf("members %+v %v", members, err)
	}
	for _, key := range []string{"pki/server.key", "pki/peer.key", "pki/client.key"} {
		if st, err := os.Stat(filepath.Join(dir, key)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", key, st, err)
		}
	}

	// The last member cannot leave without --force.
	if err := m.Leave(ctx, false); !errors.Is(err, ErrQuorum) {
		t.Fatalf("leave of the last member: %v, want ErrQuorum", err)
	}

	var snap bytes.Buffer
	if err := m.Snapshot(ctx, &snap); err != nil || snap.Len() == 0 {
		t.Fatalf("snapshot: %d bytes, %v", snap.Len(), err)
	}
	path := filepath.Join(dir, "snap.db")
	if err := os.WriteFile(path, snap.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "corrupt.db")
	if err := os.WriteFile(corrupt, snap.Bytes()[:snap.Len()/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Recover(ctx, corrupt, true); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("recover from a truncated snapshot: %v, want ErrInvalidArgument", err)
	}
	if err := m.Recover(ctx, path, false); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("recover over a healthy cluster: %v, want ErrFailedPrecondition", err)
	}
	before := st.Header.ClusterId
	if err := m.Recover(ctx, path, true); err != nil {
		t.Fatalf("forced recover: %v", err)
	}
	waitHealthy(t, m)
	st, err = m.MemberStatus(ctx)
	if err != nil || st.Header.ClusterId == before {
		t.Fatalf("recovered cluster has ID %x (before %x): %v", st.Header.ClusterId, before, err)
	}

	t.Run("scheduled snapshots follow the live config and are pruned", func(t *testing.T) {
		testScheduledSnapshots(t, m, clk, want, cfg)
	})
	t.Run("an address change restarts the member at the new address with its data", func(t *testing.T) {
		testAddressChange(t, m, clk, filepath.Join(dir, "pki", "server.crt"))
	})
}

// testAddressChange moves a running single member to another address, as
// the node does when its DHCP lease or static address changes: the member
// starts again at the new address with the same ID and data, records its new
// peer URL itself (alone, it is its own quorum) and its certificate names
// the new address.
func testAddressChange(t *testing.T, m *Manager, clk *clock.Fake, serverCrt string) {
	const newIP = "127.0.0.32"
	ctx := context.Background()
	cli, err := m.LocalClient()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/unit/before-move", "kept"); err != nil {
		t.Fatal(err)
	}
	mem, err := m.current()
	if err != nil {
		t.Fatal(err)
	}
	id := mem.ID()
	m.SetAddress("unit-cp1", newIP)
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := m.Members(ctx)
		if err == nil && len(list.Members) == 1 {
			got := list.Members[0]
			if got.ID == id && slices.Equal(got.PeerURLs, []string{"https://" + newIP + ":2380"}) &&
				slices.Equal(got.ClientURLs, []string{"https://" + newIP + ":2379"}) {
				break
			}
			err = fmt.Errorf("member %x peer %v client %v", got.ID, got.PeerURLs, got.ClientURLs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %x not at %s: %v (%s)", id, newIP, err, m.Status())
		}
		clk.Advance(staleCheckInterval) // the membership check that records the peer URL
		time.Sleep(100 * time.Millisecond)
	}
	cli, err = m.LocalClient()
	if err != nil {
		t.Fatal(err)
	}
	if got := cli.Endpoints(); !slices.Equal(got, []string{"https://" + newIP + ":2379"}) {
		t.Fatalf("local client endpoints %v", got)
	}
	resp, err := cli.Get(ctx, "/unit/before-move")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "kept" {
		t.Fatalf("key written before the move: %+v %v", resp, err)
	}
	b, err := os.ReadFile(serverCrt)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	crt, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(crt.IPAddresses, func(ip net.IP) bool { return ip.String() == newIP }) {
		t.Fatalf("server certificate names %v, not %s", crt.IPAddresses, newIP)
	}
}

// testScheduledSnapshots changes cluster.etcd.snapshots on the desired
// config of a running member, as apply-config --mode no-reboot does, and
// drives the schedule on the fake clock: snapshots are taken at the
// interval, pruned to keep (more than one), re-armed when the interval
// changes and stopped when the schedule is removed; etcd never restarts.
func testScheduledSnapshots(t *testing.T, m *Manager, clk *clock.Fake, want *desired.Config, base *config.Config) {
	withSchedule := func(s *config.Snapshots) {
		c := *base
		c.Cluster.Etcd.Snapshots = s
		want.Set(&c)
	}
	count := func() []string {
		entries, _ := os.ReadDir(m.opts.SnapshotDir)
		var out []string
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "etcd-") && strings.HasSuffix(e.Name(), ".db") {
				out = append(out, e.Name())
			}
		}
		return out
	}
	waitTaken := func(total int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for m.snapshotsTaken() < total {
			if time.Now().After(deadline) {
				t.Fatalf("%d snapshots taken, want %d", m.snapshotsTaken(), total)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Fire every timer armed so far (earlier waits of this test), so that
	// only the stale-cluster check (1) is pending from here on.
	clk.Advance(time.Hour)
	clk.BlockUntil(1)
	mem, err := m.current()
	if err != nil {
		t.Fatal(err)
	}
	id := mem.ID()

	withSchedule(&config.Snapshots{Interval: config.Duration(time.Minute), Keep: 2})
	for i := 1; i <= 4; i++ {
		clk.BlockUntil(2) // the stale check and the schedule
		clk.Advance(time.Minute)
		waitTaken(i)
	}
	if got := count(); len(got) != 2 || got[0] != "etcd-20260101T010300.000Z.db" || got[1] != "etcd-20260101T010400.000Z.db" {
		t.Fatalf("after 4 snapshots with keep 2: %v, want the newest two", got)
	}

	// A longer interval and a larger keep, live: the old timer is dropped.
	withSchedule(&config.Snapshots{Interval: config.Duration(2 * time.Minute), Keep: 3})
	clk.BlockUntil(3) // the stale check, the dropped timer, the new one
	clk.Advance(time.Minute)
	clk.BlockUntil(2)
	if n := m.snapshotsTaken(); n != 4 {
		t.Fatalf("a snapshot was taken on the old 1m interval (%d taken)", n)
	}
	clk.Advance(time.Minute)
	waitTaken(5)
	if got := count(); len(got) != 3 {
		t.Fatalf("keep 3: %d snapshots kept (%v)", len(got), got)
	}

	// Off: nothing more is taken.
	withSchedule(nil)
	clk.BlockUntil(2)
	for range 5 {
		clk.Advance(10 * time.Minute)
		clk.BlockUntil(1)
	}
	if n := m.snapshotsTaken(); n != 5 {
		t.Fatalf("%d snapshots taken after the schedule was removed, want 5", n)
	}
	if mem, err := m.current(); err != nil || mem.ID() != id {
		t.Fatal("etcd restarted while the schedule changed")
	}
}

func waitHealthy(t *testing.T, m *Manager) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := m.Healthy(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("member not healthy: %v (%s)", err, m.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitEvent waits for an event of kind whose field has value.
func waitEvent(t *testing.T, ring *events.Ring, kind events.Kind, field, value string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, ev := range ring.List(time.Time{}, 0) {
			if ev.Kind == kind && ev.Fields[field] == value {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event with %s=%s among %+v", kind, field, value, ring.List(time.Time{}, 0))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
