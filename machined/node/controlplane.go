package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/images"
)

// k8sCertsService issues and renews the control plane's certificates.
const k8sCertsService = "k8s-certs"

// restartLockKey serializes kube-apiserver restarts (renewed certificates,
// changed flags) across control planes, so that only one is down at a time.
const restartLockKey = "/ballast/locks/control-plane-restart"

// restartReadyTimeout bounds the wait for a restarted component to be
// healthy before the next one restarts.
const restartReadyTimeout = 3 * time.Minute

// k8sDir is the node's Kubernetes directory (certificates, kubeconfigs).
func (n *Node) k8sPaths() k8s.Paths {
	return k8s.Paths{Dir: filepath.Join(n.store.EphemeralDir(), "lib", "kubernetes")}
}

// k8sNode is what the control plane's files depend on besides the config.
func (n *Node) k8sNode(cfg *config.Config) k8s.Node {
	return k8s.Node{
		Name:          n.nodeName(cfg),
		AdvertiseIP:   n.advertiseIP(cfg),
		LocalEndpoint: "https://" + n.lbAddr(),
	}
}

// controlPlaneSpecs are the certificate controller and the three
// components, as containers of the node's containerd.
func (n *Node) controlPlaneSpecs(cfg *config.Config) []supervisor.Spec {
	certsReady := make(chan struct{})
	var readyOnce sync.Once
	markReady := func() { readyOnce.Do(func() { close(certsReady) }) }
	waitCerts := supervisor.Condition{Name: "kubernetes certificates issued", Wait: func(ctx context.Context) error {
		return waitClosed(ctx, certsReady)
	}}
	specs := []supervisor.Spec{{
		ID:          k8sCertsService,
		Description: "Kubernetes certificates, kubeconfigs and encryption config, renewed when a third of their lifetime is left",
		Runner: runner.Goroutine(k8sCertsService, func(ctx context.Context, out io.Writer) error {
			return n.runK8sCerts(ctx, out, markReady)
		}),
		Restart: supervisor.Always,
	}}
	probes := map[string]func(context.Context) error{
		images.APIServer:         k8s.APIServerProbe(n.k8sPaths()).Check,
		images.ControllerManager: k8s.LocalProbe(k8s.ControllerManagerPort).Check,
		images.Scheduler:         k8s.LocalProbe(k8s.SchedulerPort).Check,
	}
	// The apiserver is restarted when not alive (/livez), not when merely
	// not ready (/readyz fails without etcd quorum).
	liveness := map[string]func(context.Context) error{images.APIServer: k8s.APIServerLivenessProbe(n.k8sPaths()).Check}
	// The controller-manager and scheduler start once an apiserver answers
	// through the node's load balancer: started earlier, they exit and
	// back off, which cost seconds at cluster creation.
	throughLB := n.apiserverThroughLB()
	conds := func(name string) []supervisor.Condition {
		c := []supervisor.Condition{waitCerts, {Name: "component images imported", Wait: n.waitComponentImages}}
		if name != images.APIServer {
			c = append(c, throughLB)
		}
		return c
	}
	for _, name := range images.ControlPlaneComponents {
		deps := []string{containerdService, etcdService}
		if name != images.APIServer {
			deps = []string{containerdService, lbService}
		}
		specs = append(specs, supervisor.Spec{
			ID:          name,
			Description: name + " " + cfg.Cluster.KubernetesVersion + " (container in containerd namespace " + runner.SystemNamespace + ")",
			DependsOn:   deps,
			Conditions:  conds(name),
			Runner:      &componentRunner{n: n, name: name},
			Restart:     supervisor.Always,
			// A component that fails 10 (liveness) probes in a row (≥ 20 s;
			// an apiserver starts in ~3 s) is restarted.
			Health: &supervisor.HealthCheck{Check: probes[name], Liveness: liveness[name], Interval: 2 * time.Second, Timeout: 5 * time.Second, FailureThreshold: 10},
		})
	}
	return specs
}

// apiserverThroughLB is the condition of what talks to the API from a
// control plane: an apiserver answers ready through the node's load
// balancer.
func (n *Node) apiserverThroughLB() supervisor.Condition {
	return supervisor.Condition{Name: "an apiserver ready through the load balancer", Wait: func(ctx context.Context) error {
		return pollUntil(ctx, n.clock, 250*time.Millisecond, k8s.APIServerProbeAt(n.k8sPaths(), n.lbAddr()).Check)
	}}
}

// componentRunner builds a component's container at every start, so that a
// restart picks up the current config (extraArgs, image) and etcd members.
type componentRunner struct {
	n    *Node
	name string
}

func (r *componentRunner) String() string { return "container(" + r.name + ")" }

func (r *componentRunner) Run(ctx context.Context, out io.Writer, started func()) error {
	n := r.n
	cfg := n.desired.Current()
	if cfg == nil {
		return errors.New("no machine config")
	}
	comps, err := k8s.Components(cfg, n.k8sNode(cfg), n.k8sPaths(), n.etcdServers(ctx, cfg))
	if err != nil {
		return err
	}
	i := slices.IndexFunc(comps, func(c k8s.Component) bool { return c.Name == r.name })
	if i < 0 {
		return fmt.Errorf("unknown component %s", r.name)
	}
	c := comps[i]
	n.mu.Lock()
	d := n.ctrd
	n.mu.Unlock()
	name := n.nodeName(cfg)
	return runner.Container(runner.ContainerOptions{
		Client:      d.Client,
		ID:          c.Name,
		Image:       c.Image,
		Args:        c.Args,
		Mounts:      c.Mounts,
		Hostname:    name,
		CgroupsPath: "/ballast/" + name + "/" + c.Name,
		FIFODir:     d.FIFODir(),
		RuncRoot:    d.RuncRoot(),
		GracePeriod: 15 * time.Second,
	}).Run(ctx, out, started)
}

// etcdServers are the client URLs of the etcd members, this node's first;
// the node's own member alone when the list cannot be read.
func (n *Node) etcdServers(ctx context.Context, cfg *config.Config) []string {
	own := "https://" + n.advertiseIP(cfg) + ":2379"
	out := []string{own}
	n.mu.Lock()
	mgr := n.etcdMgr
	n.mu.Unlock()
	if mgr == nil {
		return out
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := mgr.Members(cctx)
	if err != nil {
		return out
	}
	for _, m := range resp.Members {
		if m.IsLearner {
			continue
		}
		for _, u := range m.ClientURLs {
			if u != own && !strings.Contains(u, "127.0.0.1") {
				out = append(out, u)
			}
		}
	}
	return out
}

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

// componentSpecs fingerprints each component's image and flags (without
// the etcd member list, which a restart picks up anyway).
func (n *Node) componentSpecs(cfg *config.Config) map[string]string {
	comps, err := k8s.Components(cfg, n.k8sNode(cfg), n.k8sPaths(), []string{"-"})
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, c := range comps {
		out[c.Name] = c.Image + " " + strings.Join(c.Args, " ")
	}
	return out
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
