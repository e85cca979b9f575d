package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ballast-os/ballast/machined/events"
	"github.com/ballast-os/ballast/machined/kube"
	"github.com/ballast-os/ballast/machined/slots"
	"github.com/ballast-os/ballast/machined/supervisor"
)

// gateInterval is how often the health gate looks.
const gateInterval = time.Second

// runHealthGate decides a tried slot: once every check passes within the
// attempt's health timeout the slot becomes the active one; otherwise the
// try is recorded as failed with the last check's reason and the node
// reboots into the active slot.
func (n *Node) runHealthGate(ctx context.Context) {
	slot := n.runningSlot()
	var st *slots.State
	if n.retryRecord(ctx, "read", func() (err error) { st, err = n.record().Load(); return err }) != nil || st.Trying != slot {
		return
	}
	timeout := DefaultHealthTimeout
	if st.Last != nil && st.Last.HealthTimeout > 0 {
		timeout = st.Last.HealthTimeout
	}
	n.log.Info("health gate: this boot tries the slot", "slot", slot, "timeout", timeout)
	deadline := n.booted.Add(timeout)
	last := errors.New("not checked yet")
	for {
		if last = n.gateCheck(ctx); last == nil {
			n.settleTry(ctx, slot, func(st *slots.State) { st.Good(time.Now()) })
			n.log.Info("health gate passed: the slot is now the active one", "slot", slot, "took", time.Since(n.booted).Round(time.Millisecond))
			n.events.Publish(events.Upgrade, "upgrade", "health gate passed: slot "+slot+" is now the active one",
				"action", "gate-passed", "slot", slot)
			return
		}
		if time.Now().After(deadline) {
			reason := fmt.Sprintf("health gate not passed within %s: %v", timeout, last)
			n.settleTry(ctx, slot, func(st *slots.State) { st.Fail(time.Now(), reason) })
			n.log.Error("upgrade failed: rebooting into the active slot", "slot", slot, "reason", reason)
			n.events.Publish(events.Upgrade, "upgrade", "upgrade failed: "+reason, "action", "gate-failed", "slot", slot)
			n.rebootIntoSlot()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(gateInterval):
		}
	}
}

// settleMachineBoot is a machine's side of GRUB's boot-once: GRUB turned
// next into trying before it booted; if trying names the other slot, that
// try ended (a kernel that did not boot, an agent that crashed, a failed
// gate) and GRUB booted the active slot, so the attempt failed. If it
// names this slot, this boot is the try and faces the health gate.
func (n *Node) settleMachineBoot(ctx context.Context) {
	slot := n.runningSlot()
	thisTry := false
	err := n.retryRecord(ctx, "settle this boot", func() error {
		n.upgradeMu.Lock()
		defer n.upgradeMu.Unlock()
		st, err := n.record().Load()
		if err != nil {
			return err
		}
		thisTry = st.Trying == slot
		if st.Trying == "" || thisTry {
			return nil
		}
		tried := st.Trying
		st.Fail(time.Now(), fmt.Sprintf("slot %s did not come up: the boot that tried it ended before its health gate passed; slot %s booted instead", tried, slot))
		if err := n.record().Save(st); err != nil {
			return err
		}
		n.log.Error("upgrade failed: the tried slot did not come up; running the active slot", "tried", tried, "slot", slot)
		return nil
	})
	if err == nil && thisTry {
		n.runHealthGate(ctx)
	}
}

// settleTry updates the record while it still shows this slot's try.
func (n *Node) settleTry(ctx context.Context, slot string, fn func(*slots.State)) {
	_ = n.retryRecord(ctx, "settle the try", func() error {
		n.upgradeMu.Lock()
		defer n.upgradeMu.Unlock()
		st, err := n.record().Load()
		if err != nil || st.Trying != slot {
			return err
		}
		fn(st)
		return n.record().Save(st)
	})
}

// retryRecord runs op, a read or update of the A/B record, until it
// succeeds or ctx ends, backing off from 1 s to 30 s: a transient error
// (the EFI partition busy, an I/O error) must not leave a try unsettled
// (a passed gate unrecorded would make the next boot fall back).
func (n *Node) retryRecord(ctx context.Context, what string, op func() error) error {
	delay := time.Second
	for {
		err := op()
		if err == nil {
			return nil
		}
		n.log.Error("A/B record: cannot "+what+"; retrying", "error", err, "in", delay)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// gateCheck is the health gate: the node configured, every service
// Running (or finished), the etcd member started and caught up (a
// linearizable read through it as a voting member), and the kubelet's
// Node Ready with a heartbeat from this boot.
func (n *Node) gateCheck(ctx context.Context) error {
	cfg := n.desired.Current()
	if cfg == nil {
		return errors.New("the node has no config")
	}
	list := n.sup.List()
	if len(list) == 0 {
		return errors.New("no services yet")
	}
	hasKubelet := false
	for _, s := range list {
		switch s.State {
		case supervisor.StateRunning, supervisor.StateFinished:
		default:
			return fmt.Errorf("service %s is %s", s.ID, s.State)
		}
		if s.Healthy != nil && !*s.Healthy {
			return fmt.Errorf("service %s is unhealthy: %s", s.ID, s.HealthMessage)
		}
		hasKubelet = hasKubelet || s.ID == kubeletService
	}
	n.mu.Lock()
	mgr := n.etcdMgr
	n.mu.Unlock()
	if mgr != nil {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := mgr.Healthy(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("etcd member: %w", err)
		}
	}
	if hasKubelet {
		return n.kubeletReady(ctx, n.nodeName(cfg))
	}
	return nil
}

// kubeletReady checks the node's Node object with the kubelet's own
// credentials: Ready, with a heartbeat from after this boot started.
func (n *Node) kubeletReady(ctx context.Context, name string) error {
	cl, err := kube.New(n.kubeletPaths().Kubeconfig(), kube.Options{UserAgent: "ballast-machined/health-gate", Timeout: 3 * time.Second})
	if err != nil {
		return fmt.Errorf("kubelet credentials: %w", err)
	}
	node, err := cl.Node(ctx, name)
	if err != nil {
		return fmt.Errorf("kubelet: Node %s: %w", name, err)
	}
	for _, c := range node.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status != corev1.ConditionTrue {
			return fmt.Errorf("kubelet: Node %s is not Ready (%s)", name, c.Reason)
		}
		if c.LastHeartbeatTime.Time.Before(n.booted.Add(-time.Second)) {
			return fmt.Errorf("kubelet: Node %s has not reported since this boot", name)
		}
		return nil
	}
	return fmt.Errorf("kubelet: Node %s has no Ready condition", name)
}
