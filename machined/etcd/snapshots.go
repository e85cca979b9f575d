package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/config"
)

// This file produces the scheduled snapshots kept on the node
// (cluster.etcd.snapshots). The schedule is live: the scheduler watches the
// desired config and re-arms itself when the interval or the number kept
// changes, without restarting etcd.

// snapshotSchedule is the part of the config the scheduler follows.
type snapshotSchedule struct {
	interval time.Duration // 0: off
	keep     int
}

func scheduleOf(cfg *config.Config) snapshotSchedule {
	s := cfg.Cluster.Etcd.Snapshots
	if s == nil || s.Interval <= 0 {
		return snapshotSchedule{}
	}
	return snapshotSchedule{interval: s.Interval.Std(), keep: max(s.Keep, 1)}
}

// scheduleSnapshots writes a snapshot into SnapshotDir every interval and
// keeps the newest ones, following the desired config until ctx ends.
func (m *Manager) scheduleSnapshots(ctx context.Context) {
	var cur snapshotSchedule
	var next <-chan time.Time // nil while off
	_, changed := m.opts.Desired.Get()
	apply := func() {
		cfg, ch := m.opts.Desired.Get()
		changed = ch
		if cfg == nil {
			return
		}
		s := scheduleOf(cfg)
		if s == cur {
			return
		}
		switch {
		case s.interval == 0:
			m.log.Info("scheduled etcd snapshots off")
			next = nil
		case s.interval != cur.interval:
			m.log.Info("scheduled etcd snapshots armed", "interval", s.interval.String(), "keep", s.keep)
			next = m.clock.After(s.interval)
		default:
			m.log.Info("scheduled etcd snapshots: keep changed", "keep", s.keep)
		}
		cur = s
	}
	apply()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			apply()
		case <-next:
			if err := m.snapshotToDir(ctx, cur.keep); err != nil && ctx.Err() == nil {
				m.log.Warn("scheduled etcd snapshot failed", "error", err)
			}
			next = m.clock.After(cur.interval)
		}
	}
}

// snapshotToDir streams one snapshot into a new file (atomically: a failed
// stream leaves no partial file) and prunes old ones.
func (m *Manager) snapshotToDir(ctx context.Context, keep int) error {
	if err := os.MkdirAll(m.opts.SnapshotDir, 0o700); err != nil {
		return err
	}
	name := filepath.Join(m.opts.SnapshotDir, "etcd-"+m.clock.Now().UTC().Format("20060102T150405.000Z")+".db")
	var n int64
	err := atomicfile.WriteWith(name, 0o600, func(w io.Writer) error {
		cw := &countingWriter{w: w}
		err := m.Snapshot(ctx, cw)
		n = cw.n
		return err
	})
	if err != nil {
		return err
	}
	m.snapshots.Add(1)
	m.log.Info("etcd snapshot written", "file", name, "bytes", n)
	return pruneSnapshots(m.opts.SnapshotDir, keep)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// snapshotsTaken counts the scheduled snapshots written since start.
func (m *Manager) snapshotsTaken() int { return int(m.snapshots.Load()) }

// pruneSnapshots removes all but the newest keep snapshots in dir.
func pruneSnapshots(dir string, keep int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "etcd-") && strings.HasSuffix(e.Name(), ".db") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // timestamps sort chronologically
	var errs []error
	for len(names) > keep {
		if err := os.Remove(filepath.Join(dir, names[0])); err != nil {
			errs = append(errs, fmt.Errorf("prune snapshot: %w", err))
		}
		names = names[1:]
	}
	return errors.Join(errs...)
}
