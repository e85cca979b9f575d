package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/images"
)

// This file is the control-plane certificates controller (service
// k8s-certs): it keeps the Kubernetes directory's CAs, keys, certificates
// and kubeconfigs current with the config and the clock, and restarts the
// components whose files changed, one apiserver at a time cluster-wide.

// runK8sCerts keeps the control plane's files current: at start, when the
// config changes, and when the next certificate is due. Components whose
// files changed are restarted one at a time, cluster-wide.
func (n *Node) runK8sCerts(ctx context.Context, out io.Writer, ready func()) error {
	first := true
	var specs map[string]string
	for {
		cfg, changed := n.Config()
		if cfg == nil {
			return errors.New("no machine config")
		}
		r, err := k8s.Sync(n.k8sPaths(), cfg, n.k8sNode(cfg), time.Now())
		if err != nil {
			return fmt.Errorf("kubernetes certificates: %w", err)
		}
		// Components whose flags changed (cluster.*.extraArgs, live) restart
		// as well, through the same one-at-a-time path.
		// Pending restarts outlive a failure of this loop (the service is
		// restarted), so no component keeps running on replaced files.
		now := n.componentSpecs(cfg)
		n.mu.Lock()
		if n.pendingRestart == nil {
			n.pendingRestart = map[string]bool{}
		}
		for _, name := range r.Changed {
			n.pendingRestart[name] = true
		}
		for _, name := range []string{images.Scheduler, images.ControllerManager, images.APIServer} {
			if specs != nil && now[name] != specs[name] {
				n.pendingRestart[name] = true
			}
		}
		var restart []string
		for _, name := range []string{images.Scheduler, images.ControllerManager, images.APIServer} {
			if n.pendingRestart[name] {
				restart = append(restart, name)
			}
		}
		n.mu.Unlock()
		specs = now
		if len(restart) > 0 {
			// At the first pass the components have not started (they
			// wait for ready) unless this loop itself was restarted.
			if !first {
				fmt.Fprintf(out, "files or flags of %s changed; next renewal %s\n", strings.Join(restart, ", "), r.Next.Format(time.RFC3339))
			}
			if err := n.restartComponents(ctx, restart, out); err != nil {
				return err
			}
		}
		if first {
			fmt.Fprintf(out, "certificates current; next renewal %s\n", r.Next.Format(time.RFC3339))
			ready()
			first = false
		}
		if len(restart) > 0 {
			continue // a restart can take a while: look again at once
		}
		wait := time.Until(r.Next)
		if wait < time.Second {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-n.clock.After(wait):
		}
	}
}

// restartComponents restarts each component in turn and waits for it to be
// healthy again before the next. kube-apiserver restarts hold the
// cluster-wide restart lock, so the API stays up on the other control planes;
// the VIP holder hands the VIP over first. The scheduler and
// controller-manager are leader-elected and restart without it.
func (n *Node) restartComponents(ctx context.Context, names []string, out io.Writer) error {
	n.mu.Lock()
	mgr, vipCtl := n.etcdMgr, n.vip
	n.mu.Unlock()
	for _, name := range names {
		if st, err := n.sup.Get(name); err != nil || st.State != supervisor.StateRunning {
			n.mu.Lock()
			delete(n.pendingRestart, name) // not started yet: it starts with the new files
			n.mu.Unlock()
			continue
		}
		unlock := func() {}
		if name == images.APIServer {
			var err error
			if unlock, err = lockRestart(ctx, mgr.LocalClient); err != nil {
				return fmt.Errorf("restart lock: %w", err)
			}
			if vipCtl != nil {
				vipCtl.Resign(ctx)
			}
		}
		fmt.Fprintf(out, "restarting %s\n", name)
		err := n.sup.Restart(ctx, name)
		if err == nil {
			err = n.waitServiceHealthy(ctx, name, restartReadyTimeout)
		}
		unlock()
		if err != nil {
			return fmt.Errorf("restart %s: %w", name, err)
		}
		n.mu.Lock()
		delete(n.pendingRestart, name)
		n.mu.Unlock()
		fmt.Fprintf(out, "%s is healthy again\n", name)
	}
	return nil
}

// lockRestart takes the cluster-wide restart lock through etcd.
func lockRestart(ctx context.Context, client func() (*clientv3.Client, error)) (func(), error) {
	cli, err := client()
	if err != nil {
		return nil, err
	}
	// The session's lease is kept alive while this node lives; a node that
	// dies holding the lock frees it after the TTL.
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(15))
	if err != nil {
		return nil, err
	}
	mu := concurrency.NewMutex(sess, restartLockKey)
	if err := mu.Lock(ctx); err != nil {
		_ = sess.Close()
		return nil, err
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = mu.Unlock(uctx)
		_ = sess.Close()
	}, nil
}

// waitServiceHealthy waits until the service is Running with a passing
// health check.
func (n *Node) waitServiceHealthy(ctx context.Context, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := pollUntil(ctx, n.clock, 250*time.Millisecond, func(context.Context) error {
		st, err := n.sup.Get(id)
		switch {
		case err != nil:
			return err
		case st.State == supervisor.StateRunning && st.Healthy != nil && *st.Healthy:
			return nil
		}
		return fmt.Errorf("%s %s", st.State, st.HealthMessage)
	})
	if err != nil {
		return fmt.Errorf("%s not healthy within %s: %w", id, timeout, err)
	}
	return nil
}
