package etcd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/errdefs"
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
	m := New(Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Name: "unit-cp1", AdvertiseIP: ip,
		DataDir: filepath.Join(dir, "etcd"), PKIDir: filepath.Join(dir, "pki"), SnapshotDir: filepath.Join(dir, "snaps"),
		Config: func() *config.Config { return cfg },
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
