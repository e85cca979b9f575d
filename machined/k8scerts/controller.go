// Package k8scerts is the controller of a control plane's Kubernetes files
// (service k8s-certs): it keeps the CAs, keys, certificates, kubeconfigs
// and encryption config of the node's Kubernetes directory current with the
// machine config and the clock (k8s.Sync), and restarts the components
// whose files or flags changed — one at a time on the node, and
// kube-apiserver one at a time cluster-wide under a lock in etcd, after the
// VIP has been handed over, so the API keeps answering.
package k8scerts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/images"
)

// Service is the controller's name as a supervised service.
const Service = "k8s-certs"

// RestartLockKey serializes kube-apiserver restarts (renewed certificates,
// changed flags) across the control planes.
const RestartLockKey = "/ballast/locks/control-plane-restart"

// ReadyTimeout bounds the wait for a restarted component to be healthy.
const ReadyTimeout = 3 * time.Minute

// Resync is the longest the controller waits between passes: files
// removed or replaced behind its back are put right within it, whenever
// the next certificate is due.
const Resync = 5 * time.Minute

// components are restarted in this order: the leader-elected ones first,
// the apiserver (which holds the cluster-wide lock) last.
var components = []string{images.Scheduler, images.ControllerManager, images.APIServer}

// Services is the node's supervisor, as the controller uses it.
type Services interface {
	Get(id string) (supervisor.Status, error)
	Restart(ctx context.Context, id string) error
}

// Inputs is what the control plane's files depend on, read at each pass.
type Inputs struct {
	// Config returns the machine config and a channel closed when it
	// changes.
	Config func() (*config.Config, <-chan struct{})
	// Node is what the files depend on besides the config (name, address).
	Node func(*config.Config) k8s.Node
	// Specs fingerprint each component's image and flags: a changed one
	// is restarted like a component whose files changed.
	Specs func(*config.Config) map[string]string
}

// Controller keeps the files current and the components on them.
type Controller struct {
	Paths    k8s.Paths
	Inputs   Inputs
	Services Services
	// Lock takes the cluster-wide restart lock (EtcdLock) and returns its
	// release.
	Lock func(context.Context) (unlock func(), err error)
	// HandOff gives the VIP away before this node's apiserver restarts
	// (nil: nothing to hand off).
	HandOff func(context.Context)
	Clock   clock.Clock

	mu sync.Mutex
	// pending are components whose files or flags changed and that have
	// not restarted since: they outlive a failed pass (the service is
	// restarted), so no component keeps running on replaced files.
	pending map[string]bool
}

// Run keeps the files current until ctx ends: at start, when the config
// changes, when the next certificate is due (a third of its lifetime
// left), and at least every Resync. ready is called once the files are current the first time (the
// components wait for it).
func (c *Controller) Run(ctx context.Context, out io.Writer, ready func()) error {
	first := true
	var specs map[string]string
	for {
		cfg, changed := c.Inputs.Config()
		if cfg == nil {
			return errors.New("no machine config")
		}
		r, err := k8s.Sync(c.Paths, cfg, c.Inputs.Node(cfg), c.Clock.Now())
		if err != nil {
			return fmt.Errorf("kubernetes certificates: %w", err)
		}
		now := c.Inputs.Specs(cfg)
		restart := c.markPending(r.Changed, specs, now)
		specs = now
		if len(restart) > 0 {
			// At the first pass the components have not started (they
			// wait for ready) unless this loop itself was restarted.
			if !first {
				fmt.Fprintf(out, "files or flags of %s changed; next renewal %s\n", strings.Join(restart, ", "), r.Next.Format(time.RFC3339))
			}
			if err := c.restart(ctx, restart, out); err != nil {
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
		wait := min(max(r.Next.Sub(c.Clock.Now()), time.Second), Resync)
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-c.Clock.After(wait):
		}
	}
}

// markPending adds the components whose files changed, and those whose
// fingerprint differs from the last pass's, to the pending restarts, and
// returns every pending one in restart order.
func (c *Controller) markPending(changedFiles []string, before, now map[string]string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		c.pending = map[string]bool{}
	}
	for _, name := range changedFiles {
		c.pending[name] = true
	}
	var out []string
	for _, name := range components {
		if before != nil && now[name] != before[name] {
			c.pending[name] = true
		}
		if c.pending[name] {
			out = append(out, name)
		}
	}
	return out
}

func (c *Controller) done(name string) {
	c.mu.Lock()
	delete(c.pending, name)
	c.mu.Unlock()
}

// restart restarts each component in turn and waits for it to be healthy
// again before the next. kube-apiserver restarts hold the cluster-wide
// restart lock, so the API stays up on the other control planes; the VIP
// holder hands the VIP over first. The scheduler and controller-manager
// are leader-elected and restart without it.
func (c *Controller) restart(ctx context.Context, names []string, out io.Writer) error {
	for _, name := range names {
		if st, err := c.Services.Get(name); err != nil || st.State != supervisor.StateRunning {
			c.done(name) // not started yet: it starts with the new files
			continue
		}
		unlock := func() {}
		if name == images.APIServer {
			var err error
			if unlock, err = c.Lock(ctx); err != nil {
				return fmt.Errorf("restart lock: %w", err)
			}
			if c.HandOff != nil {
				c.HandOff(ctx)
			}
		}
		fmt.Fprintf(out, "restarting %s\n", name)
		err := c.Services.Restart(ctx, name)
		if err == nil {
			err = c.waitHealthy(ctx, name, ReadyTimeout)
		}
		unlock()
		if err != nil {
			return fmt.Errorf("restart %s: %w", name, err)
		}
		c.done(name)
		fmt.Fprintf(out, "%s is healthy again\n", name)
	}
	return nil
}

// EtcdLock is the cluster-wide restart lock (RestartLockKey) through the
// etcd client that client returns.
func EtcdLock(client func() (*clientv3.Client, error)) func(context.Context) (func(), error) {
	return func(ctx context.Context) (func(), error) { return lock(ctx, client) }
}

func lock(ctx context.Context, client func() (*clientv3.Client, error)) (func(), error) {
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
	mu := concurrency.NewMutex(sess, RestartLockKey)
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

// waitHealthy waits until the service is Running with a passing health
// check.
func (c *Controller) waitHealthy(ctx context.Context, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		st, err := c.Services.Get(id)
		switch {
		case err != nil:
			last = err.Error()
		case st.State == supervisor.StateRunning && st.Healthy != nil && *st.Healthy:
			return nil
		default:
			last = fmt.Sprintf("%s %s", st.State, st.HealthMessage)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy within %s: %w (last: %s)", id, timeout, ctx.Err(), last)
		case <-c.Clock.After(250 * time.Millisecond):
		}
	}
}
