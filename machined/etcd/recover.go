package etcd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"

	"github.com/ballast-os/ballast/machined/errdefs"
)

// recoveryKey marks a cluster restored from a snapshot. Members of the
// cluster it replaced find it there, wipe their stale data and join again.
const recoveryKey = "/ballast/etcd/recovery"

// recoveryMarker is the value under recoveryKey.
type recoveryMarker struct {
	// Previous is the ID of the replaced cluster (0: unknown).
	Previous uint64    `json:"previous"`
	Time     time.Time `json:"time"`
}

// Recover restores the snapshot at path on this node as a new one-member
// cluster. When this node is a member of a cluster that still has quorum,
// recovery would discard that cluster's newer data and is refused unless forced.
//
// The snapshot is restored (its integrity hash checked) into a staging
// directory first; only a usable restore replaces the member's data.
func (m *Manager) Recover(ctx context.Context, path string, force bool) error {
	cfg := m.config()
	if cfg == nil || !cfg.IsControlPlane() {
		return ErrNotControlPlane
	}
	var prev uint64
	if mem, err := m.current(); err == nil {
		prev = mem.ClusterID()
		if !force && m.Healthy(ctx) == nil {
			return fmt.Errorf("%w: this node's etcd cluster is healthy; recovering would discard its data (use --force)", errdefs.ErrFailedPrecondition)
		}
	} else if f, err := m.discover(ctx); err == nil && f != nil {
		f.cli.Close()
		if !force {
			return fmt.Errorf("%w: an etcd cluster with quorum answers at %s; recovering would split it (use --force)", errdefs.ErrFailedPrecondition, f.endpoint)
		}
	}
	staged := m.opts.DataDir + ".restored"
	if err := os.RemoveAll(staged); err != nil {
		return err
	}
	err := snapshot.NewV3(zapLogger(discard{})).Restore(snapshot.RestoreConfig{
		SnapshotPath: path, Name: m.name(), OutputDataDir: staged,
		PeerURLs: []string{m.peerURL()}, InitialCluster: m.name() + "=" + m.peerURL(),
		InitialClusterToken: "ballast-recovered-" + randomHex(6),
	})
	if err != nil {
		_ = os.RemoveAll(staged)
		return fmt.Errorf("%w: snapshot is not usable: %v", errdefs.ErrInvalidArgument, err)
	}
	return m.send(ctx, request{kind: reqRecover, snapshot: staged, prevID: prev})
}

// restore swaps the staged, restored data in (the member is stopped). The
// old data is kept aside until the swap succeeded.
func (m *Manager) restore(r request) error {
	m.setStatus("restoring a snapshot")
	aside := m.opts.DataDir + ".before-recovery"
	_ = os.RemoveAll(aside)
	if err := os.Rename(m.opts.DataDir, aside); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("move old etcd data aside: %w", err)
	}
	if err := os.Rename(r.snapshot, m.opts.DataDir); err != nil {
		_ = os.Rename(aside, m.opts.DataDir)
		return fmt.Errorf("restore snapshot: %w", err)
	}
	_ = os.RemoveAll(aside)
	_ = os.Remove(m.idFile())
	m.mu.Lock()
	m.left = false
	m.pendingMarker = &recoveryMarker{Previous: r.prevID, Time: m.clock.Now().UTC()}
	m.mu.Unlock()
	m.log.Info("snapshot restored; starting as a new one-member cluster", "previous_cluster", fmt.Sprintf("%x", r.prevID))
	return nil
}

// writePendingMarker records the recovery in the new cluster once it runs.
func (m *Manager) writePendingMarker(ctx context.Context) {
	m.mu.Lock()
	marker := m.pendingMarker
	m.mu.Unlock()
	if marker == nil {
		return
	}
	data, _ := json.Marshal(marker)
	err := m.withClient(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Put(ctx, recoveryKey, string(data))
		return err
	})
	if err != nil {
		m.log.Warn("cannot record the recovery marker", "error", err)
		return
	}
	m.mu.Lock()
	m.pendingMarker = nil
	m.mu.Unlock()
}

// staleCheckInterval is how often a running member checks its membership:
// whether its cluster was replaced by a recovered one, and whether the
// cluster still has its current peer URL.
const staleCheckInterval = 3 * time.Second

// watchStale runs the periodic membership checks of a running member. It
// corrects this member's peer URL when the cluster has an old one, and it
// looks for a recovered cluster that replaced this node's one:
// when a peer answers with another cluster ID and a recovery marker naming
// this cluster (or naming none while this cluster has no quorum), this
// node's data is stale: it is wiped and the node joins the new cluster.
func (m *Manager) watchStale(ctx context.Context) {
	m.writePendingMarker(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.clock.After(staleCheckInterval):
		}
		m.mu.Lock()
		mem := m.running
		m.mu.Unlock()
		if mem == nil {
			continue
		}
		m.checkOwnMembership(ctx, mem.ID())
		mine := mem.ClusterID()
		for _, ep := range m.candidates() {
			marker, other, err := m.peerRecovery(ctx, ep)
			if err != nil || other == 0 || other == mine || marker == nil {
				continue
			}
			if marker.Previous == mine || (marker.Previous == 0 && m.Healthy(ctx) != nil) {
				m.log.Warn("this node's etcd data belongs to a cluster that was recovered from a snapshot; wiping it to join again",
					"stale_cluster", fmt.Sprintf("%x", mine), "new_cluster", fmt.Sprintf("%x", other), "peer", ep)
				_ = m.send(ctx, request{kind: reqRejoin})
				return
			}
		}
	}
}

// peerRecovery reads the cluster ID and recovery marker one peer serves.
func (m *Manager) peerRecovery(ctx context.Context, ep string) (*recoveryMarker, uint64, error) {
	cli, err := m.newClient([]string{ep})
	if err != nil {
		return nil, 0, err
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	// A serializable read answers from the peer itself and its header
	// carries the peer's cluster ID (no Status RPC: see memberHealthy).
	resp, err := cli.Get(cctx, recoveryKey, clientv3.WithSerializable())
	if err != nil {
		return nil, 0, err
	}
	id := resp.Header.ClusterId
	if len(resp.Kvs) == 0 {
		return nil, id, nil
	}
	var mk recoveryMarker
	if err := json.Unmarshal(resp.Kvs[0].Value, &mk); err != nil {
		return nil, id, err
	}
	return &mk, id, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = io.ReadFull(rand.Reader, b)
	return hex.EncodeToString(b)
}
