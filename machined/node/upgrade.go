package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/events"
	"github.com/ballast-os/ballast/machined/server"
	"github.com/ballast-os/ballast/machined/slots"
	"github.com/ballast-os/ballast/pkg/bundle"
	"github.com/ballast-os/ballast/pkg/version"
)

// DefaultHealthTimeout bounds a new system's health gate when the caller
// names none.
const DefaultHealthTimeout = 5 * time.Minute

// containerKinds are the bundle parts a container-mode slot holds.
var containerKinds = []string{bundle.KindMachined, bundle.KindArchive}

// bootedSlot is the slot this boot runs; upgrades need one.
func (n *Node) bootedSlot() (string, error) {
	slot := n.runningSlot()
	switch {
	case slots.Valid(slot):
		return slot, nil
	case n.opts.Mode == ModeContainer:
		return "", fmt.Errorf("%w: this machined was not started by a launcher (no slot)", errdefs.ErrFailedPrecondition)
	default:
		return "", fmt.Errorf("%w: this machine runs from its install medium (ISO or PXE), not from a disk: install it first (machine.install, docs/install.md)", errdefs.ErrFailedPrecondition)
	}
}

// lockUpgrade takes the node's upgrade lock: one upgrade or rollback at a
// time.
func (n *Node) lockUpgrade() (unlock func(), err error) {
	if !n.upgradeMu.TryLock() {
		return nil, fmt.Errorf("%w: another upgrade or rollback is in progress on this node", errdefs.ErrFailedPrecondition)
	}
	var once sync.Once
	return func() { once.Do(n.upgradeMu.Unlock) }, nil
}

// settledRecord loads the slots record and refuses while a try is not
// settled (the fallback slot must stay whole).
func (n *Node) settledRecord() (*slots.State, error) {
	st, err := n.record().Load()
	if err != nil {
		return nil, err
	}
	if st.Trying != "" {
		return nil, fmt.Errorf("%w: this boot still tries slot %s (its health gate has not passed yet); wait for it, or roll back", errdefs.ErrFailedPrecondition, st.Trying)
	}
	return st, nil
}

// bundleError gives a bundle refusal its API code.
func bundleError(err error) error {
	switch {
	case errors.Is(err, bundle.ErrInvalid), errors.Is(err, bundle.ErrDigest):
		return fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	case errors.Is(err, bundle.ErrArch), errors.Is(err, bundle.ErrDowngrade):
		return fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	}
	return err
}

func orDefault(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultHealthTimeout
	}
	return d
}

// running is the build this agent is.
func running() bundle.Running {
	t, _ := time.Parse(time.RFC3339, version.CommitTime)
	return bundle.Running{Version: version.Version, CommitTime: t, Arch: runtime.GOARCH}
}

// BeginUpgrade implements server.Machine: it checks the bundle's manifest
// against the running build and prepares the inactive slot.
func (n *Node) BeginUpgrade(manifest []byte, force bool) (server.Upgrade, error) {
	booted, err := n.bootedSlot()
	if err != nil {
		return nil, err
	}
	m, err := bundle.Parse(manifest)
	if err != nil {
		return nil, bundleError(err)
	}
	if err := m.Check(running(), force); err != nil {
		return nil, bundleError(err)
	}
	if n.opts.Mode == ModeMetal {
		if _, _, err := bootFiles(m); err != nil {
			return nil, bundleError(err)
		}
	}
	unlock, err := n.lockUpgrade()
	if err != nil {
		return nil, err
	}
	st, err := n.settledRecord()
	if err != nil {
		unlock()
		return nil, err
	}
	target := slots.Other(booted)
	if st.Next == target {
		// A staged switch to the slot about to be rewritten: undo it
		// first, so no boot can start a half-written slot.
		st.Next = ""
		if st.Last != nil && st.Last.Result == slots.Pending {
			st.Fail(time.Now(), "replaced by another upgrade")
		}
		if err := n.record().Save(st); err != nil {
			unlock()
			return nil, err
		}
	}
	sw, err := n.openSlot(booted, target)
	if err != nil {
		unlock()
		return nil, err
	}
	w, err := slots.NewWriter(sw.dir, m, sw.kinds, sw.have)
	if err != nil {
		sw.release()
		unlock()
		return nil, bundleError(err)
	}
	n.log.Info("upgrade: receiving a bundle", "version", m.Version, "slot", target, "parts_sent", len(w.Wanted()))
	return &upgrade{n: n, w: w, m: m, sw: sw, from: booted, to: target, unlock: unlock}, nil
}

// heldPart finds a part the running slot already holds (the agent itself,
// the image archives it imported), so it is copied instead of sent.
func (n *Node) heldPart(p bundle.Part) string {
	switch p.Kind {
	case bundle.KindMachined:
		if exe, err := os.Executable(); err == nil {
			return slots.Have(p, exe)
		}
	case bundle.KindArchive:
		return slots.Have(p, filepath.Join(n.opts.ImagesDir, p.Name))
	}
	return ""
}

// upgrade is one bundle being received.
type upgrade struct {
	n        *Node
	w        *slots.Writer
	m        *bundle.Manifest
	sw       *slotWrite
	from, to string
	unlock   func()
}

func (u *upgrade) Wanted() []string                     { return u.w.Wanted() }
func (u *upgrade) Write(part string, data []byte) error { return bundleError(u.w.Write(part, data)) }

// Abort drops what was received; both slots stay as they were.
func (u *upgrade) Abort() {
	u.w.Abort()
	u.sw.release()
	u.unlock()
}

// Finish checks and switches the slot, records the try and, unless staged,
// hands etcd leadership and the VIP away and reboots.
func (u *upgrade) Finish(ctx context.Context, stage bool, healthTimeout time.Duration) (*machine.UpgradeResponse, error) {
	defer u.unlock()
	defer u.sw.release()
	if err := u.w.Commit(); err != nil {
		u.w.Abort()
		return nil, bundleError(err)
	}
	if err := u.sw.finish(u.m); err != nil {
		return nil, err
	}
	n := u.n
	st, err := n.record().Load()
	if err != nil {
		return nil, err
	}
	if st.Slots == nil {
		st.Slots = map[string]slots.Slot{}
	}
	if _, ok := st.Slots[u.from]; !ok {
		// The boot medium's build, remembered for a rollback to it.
		r := running()
		st.Slots[u.from] = slots.Slot{Version: r.Version, CommitTime: r.CommitTime, Medium: true}
	}
	now := time.Now()
	st.Slots[u.to] = slots.Slot{Version: u.m.Version, CommitTime: u.m.CommitTime, KubernetesVersion: u.m.KubernetesVersion, Written: now}
	st.Schedule(slots.Attempt{Kind: slots.KindUpgrade, From: u.from, To: u.to, Version: u.m.Version, HealthTimeout: orDefault(healthTimeout), Started: now})
	if err := n.record().Save(st); err != nil {
		return nil, err
	}
	n.log.Info("upgrade: slot written", "slot", u.to, "version", u.m.Version, "staged", stage)
	n.events.Publish(events.Upgrade, "upgrade", "slot "+u.to+" written with "+u.m.Version,
		"action", "slot-written", "slot", u.to, "version", u.m.Version, "staged", strconv.FormatBool(stage))
	if !stage {
		n.rebootIntoSlot()
	}
	return &machine.UpgradeResponse{Slot: u.to, Version: u.m.Version, Rebooting: !stage}, nil
}

// Rollback implements server.Machine: the other slot is booted once under
// the health gate. During a try it ends the try (back to the active slot).
func (n *Node) Rollback(_ context.Context, stage bool, healthTimeout time.Duration) (*machine.RollbackResponse, error) {
	booted, err := n.bootedSlot()
	if err != nil {
		return nil, err
	}
	unlock, err := n.lockUpgrade()
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := n.record().Load()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	target := slots.Other(booted)
	info, written := st.Slots[target]
	switch {
	case st.Trying == booted:
		// The old slot is still the active one: end the try.
		st.Fail(now, "rolled back on request")
		target, info = st.Active, st.Slots[st.Active]
	case !written:
		return nil, fmt.Errorf("%w: slot %s holds no build to roll back to", errdefs.ErrFailedPrecondition, target)
	default:
		st.Schedule(slots.Attempt{Kind: slots.KindRollback, From: booted, To: target, Version: info.Version, HealthTimeout: orDefault(healthTimeout), Started: now})
	}
	if err := n.record().Save(st); err != nil {
		return nil, err
	}
	n.log.Info("rollback", "to", target, "version", info.Version, "staged", stage)
	n.events.Publish(events.Upgrade, "upgrade", "rolling back to slot "+target,
		"action", "rollback", "slot", target, "version", info.Version, "staged", strconv.FormatBool(stage))
	if !stage {
		n.rebootIntoSlot()
	}
	return &machine.RollbackResponse{Slot: target, Version: info.Version, Rebooting: !stage}, nil
}

// rebootIntoSlot hands etcd leadership and the VIP to other control planes
// and reboots (after the caller's answer is sent).
func (n *Node) rebootIntoSlot() {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		n.handOff(ctx)
		n.request(ActionReboot)
	}()
}

// handOff moves etcd leadership off this member and resigns the VIP, so
// the cluster does not wait for an election while the node reboots.
func (n *Node) handOff(ctx context.Context) {
	n.mu.Lock()
	mgr, ctl := n.etcdMgr, n.vip
	n.mu.Unlock()
	if mgr != nil {
		if to, err := mgr.ForfeitLeadership(ctx); errors.Is(err, errdefs.ErrFailedPrecondition) {
			n.log.Info("upgrade: etcd leadership stays (no other voting member to take it)", "reason", err)
		} else if err != nil {
			n.log.Warn("upgrade: etcd leadership not handed off", "error", err)
		} else if to != 0 {
			n.log.Info("upgrade: etcd leadership handed off", "to", fmt.Sprintf("%x", to))
		}
	}
	if ctl != nil {
		ctl.Resign(ctx)
	}
}

// UpgradeStatus implements server.Machine.
func (n *Node) UpgradeStatus() (*machine.UpgradeStatusResponse, error) {
	booted, err := n.bootedSlot()
	if err != nil {
		return nil, err
	}
	st, err := n.record().Load()
	if err != nil {
		return nil, err
	}
	resp := &machine.UpgradeStatusResponse{Slot: booted, Active: st.Active, Next: st.Next, Trying: st.Trying == booted}
	for _, name := range []string{slots.A, slots.B} {
		si := &machine.SlotInfo{Name: name}
		if s, ok := st.Slots[name]; ok {
			si.Version, si.KubernetesVersion, si.Medium = s.Version, s.KubernetesVersion, s.Medium
			if !s.CommitTime.IsZero() {
				si.CommitTime = s.CommitTime.UTC().Format(time.RFC3339)
			}
			if !s.Written.IsZero() {
				si.Written = timestamppb.New(s.Written)
			}
		} else if name == booted {
			si.Version, si.CommitTime, si.Medium = version.Version, version.CommitTime, name == slots.A
		} else if name == slots.A {
			si.Medium = true
		}
		resp.Slots = append(resp.Slots, si)
	}
	if a := st.Last; a != nil {
		resp.Last = &machine.UpgradeAttempt{
			Kind: a.Kind, From: a.From, To: a.To, Version: a.Version, Result: a.Result, Reason: a.Reason,
			Started: timestamppb.New(a.Started), HealthTimeout: durationpb.New(a.HealthTimeout),
		}
		if !a.Finished.IsZero() {
			resp.Last.Finished = timestamppb.New(a.Finished)
		}
	}
	return resp, nil
}
