// Package node is the agent's core: it loads the persisted machine config,
// serves the machine API (maintenance mode until a config arrives, mTLS with
// roles afterwards), supervises the node's services, applies new configs in
// the requested mode, and carries out reboot, shutdown and reset.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/containerd"
	"github.com/ballast-os/ballast/machined/desired"
	"github.com/ballast-os/ballast/machined/etcd"
	"github.com/ballast-os/ballast/machined/events"
	"github.com/ballast-os/ballast/machined/k8scerts"
	"github.com/ballast-os/ballast/machined/launcher"
	"github.com/ballast-os/ballast/machined/lb"
	"github.com/ballast-os/ballast/machined/logs"
	"github.com/ballast-os/ballast/machined/metrics"
	"github.com/ballast-os/ballast/machined/network"
	"github.com/ballast-os/ballast/machined/server"
	"github.com/ballast-os/ballast/machined/state"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/machined/timesync"
	"github.com/ballast-os/ballast/machined/vip"
	"github.com/ballast-os/ballast/pkg/config"
)

// Modes machined runs in.
const (
	ModeContainer = "container"
	ModeMetal     = "metal"
)

// Action is what the process must do once Run returns.
type Action int

// Actions.
const (
	ActionExit     Action = iota // the context ended: exit
	ActionReboot                 // the launcher boots again (container) or reboot (metal)
	ActionShutdown               // exit (container) or power off (metal)
)

func (a Action) String() string {
	return [...]string{"exit", "reboot", "shutdown"}[a]
}

// Options configure a Node.
type Options struct {
	Mode     string
	StateDir string
	// Listener is the machine API listener (passed in, not created here).
	Listener net.Listener
	Logger   *slog.Logger
	// AgentLog captures the agent's own log for `nodectl logs machined`.
	AgentLog *logs.Buffer
	Clock    clock.Clock
	// MetricsListen is the metrics address; "" derives it from the API
	// listener (same host, port MetricsPort).
	MetricsListen string
	// Kubernetes runs containerd and, on control planes, the Kubernetes
	// components (false: the node agent and etcd only).
	Kubernetes bool
	// ImagesDir holds the image archives imported into containerd.
	ImagesDir string
	// ContainerdPath is the containerd binary ("" finds it).
	ContainerdPath string
	// KubeletPath is the kubelet binary ("" finds it).
	KubeletPath string
}

// Node is one running machined.
type Node struct {
	opts  Options
	log   *slog.Logger
	clock clock.Clock
	store *state.Store
	sup   *supervisor.Supervisor
	creds *server.Credentials
	// metrics holds the agent's collectors (services, build, VIP, load
	// balancer); the default registry adds etcd's and the runtime's.
	metrics *metrics.Registry
	// lb is the API load balancer (service lb).
	lb *lb.Balancer
	// events are the node's machine events (nodectl events).
	events *events.Ring

	applyMu sync.Mutex // serializes ApplyConfiguration
	// upgradeMu is held while an upgrade or rollback is prepared.
	upgradeMu sync.Mutex
	// booted is when this agent started (the health gate's clock).
	booted time.Time

	// desired is the active config (possibly a try config): every
	// controller that follows a live field watches it.
	desired *desired.Config

	mu       sync.Mutex
	cfgBytes []byte // the active config as applied
	try      *tryState
	etcdMgr  *etcd.Manager
	vip      *vip.Controller // control planes only
	ctrd     *containerd.Daemon
	network  *network.Controller
	timesync *timesync.Syncer
	// k8sCerts is the control plane's files controller, kept for the
	// node's life: its pending restarts outlive a restart of its service.
	k8sCerts *k8scerts.Controller
	// componentImagesReady is closed once the images service imported the
	// control-plane components' archives (they go first), imagesReady once
	// it imported every archive.
	componentImagesReady chan struct{}
	componentImagesOnce  sync.Once
	imagesReady          chan struct{}
	imagesOnce           sync.Once
	nodeCert             *tls.Certificate // a worker's certificate from a control-plane node
	issuedFor            string           // identityKey of a control plane's certificate in use
	configured           chan struct{}    // closed when the node leaves maintenance mode
	maintenanceFP        string           // SHA-256 of the maintenance certificate
	actions              chan Action
	resetWanted          bool
	// nodeID names a node no config or DHCP server names (read once).
	nodeIDOnce sync.Once
	nodeID     string
	// metricsAt is where the metrics are served now.
	metricsAt metricsListening
}

// New prepares a node; Run starts it.
func New(opts Options) (*Node, error) {
	if opts.Mode != ModeContainer && opts.Mode != ModeMetal {
		return nil, fmt.Errorf("mode %q: want %s or %s", opts.Mode, ModeContainer, ModeMetal)
	}
	if opts.Listener == nil {
		return nil, errors.New("node: a machine API listener is required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real()
	}
	store, err := state.Open(opts.StateDir)
	if err != nil {
		return nil, err
	}
	n := &Node{
		opts:        opts,
		log:         opts.Logger,
		booted:      time.Now(),
		clock:       opts.Clock,
		store:       store,
		desired:     desired.New(),
		configured:  make(chan struct{}),
		actions:     make(chan Action, 1),
		imagesReady: make(chan struct{}),
		events:      events.New(events.DefaultSize, opts.Clock),

		componentImagesReady: make(chan struct{}),
	}
	n.sup = supervisor.New(supervisor.Options{Clock: opts.Clock, Logger: opts.Logger.With("component", "supervisor"), LogDir: store.LogDir()})
	n.metrics = metrics.NewRegistry(n.sup)
	n.lb = lb.New(lb.Options{Logger: opts.Logger.With("component", lbService), Registerer: n.metrics})
	n.network = network.New(network.Options{
		Logger:     opts.Logger.With("component", networkService),
		Config:     n.Config,
		ResolvConf: filepath.Join(store.EphemeralDir(), "etc", "resolv.conf"),

		DHCPByDefault: opts.Mode == ModeMetal,
		SetHostname:   opts.Mode == ModeMetal,
	})
	n.timesync = timesync.New(timesync.Options{
		Logger:   opts.Logger.With("component", timeService),
		Servers:  n.timeServers,
		SetClock: opts.Mode == ModeMetal,
		BootTimeout: func() time.Duration {
			if cfg := n.desired.Current(); cfg != nil {
				return cfg.Machine.Time.BootTimeout.Std()
			}
			return 0
		},
		OnStep: n.clockStepped,
	})
	return n, nil
}

// Run boots the node and serves until ctx ends or an action (reboot,
// shutdown, reset) is requested. Services are stopped in reverse dependency
// order before it returns.
func (n *Node) Run(ctx context.Context) (Action, error) {
	if promoted, err := n.store.PromoteStaged(); err != nil {
		return ActionExit, err
	} else if promoted {
		n.log.Info("staged config promoted at boot")
	}
	if err := n.loadPersisted(); err != nil {
		return ActionExit, err
	}
	if err := n.registerServices(); err != nil {
		return ActionExit, err
	}

	evCtx, stopEvents := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEvents() // after the services stopped: their last states are events too
	n.publishServiceEvents(evCtx)
	supCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	supDone := make(chan error, 1)
	go func() { supDone <- n.sup.Run(supCtx) }()
	switch {
	case n.opts.Mode == ModeContainer:
		if _, trying := launcher.Slot(); trying {
			go n.runHealthGate(supCtx)
		}
	case bootedFromDisk(kernelCmdline()):
		go n.settleMachineBoot(supCtx)
	}

	action := ActionExit
	select {
	case <-ctx.Done():
	case action = <-n.actions:
		n.log.Info("node action requested", "action", action.String())
	case err := <-supDone:
		return ActionExit, fmt.Errorf("supervisor: %w", err)
	}
	n.stopTry()
	stop()
	if err := <-supDone; err != nil && !errors.Is(err, context.Canceled) {
		n.log.Warn("supervisor stopped with error", "error", err)
	}
	n.log.Info("all services stopped")
	n.mu.Lock()
	reset := n.resetWanted
	n.mu.Unlock()
	if reset {
		if err := n.store.Wipe(); err != nil {
			return ActionExit, fmt.Errorf("reset: %w", err)
		}
		n.log.Info("node state wiped; the node returns to maintenance mode")
	}
	return action, nil
}

// loadPersisted reads STATE and sets up the API credentials for the mode the
// node starts in.
func (n *Node) loadPersisted() error {
	data, err := n.store.Config()
	if errors.Is(err, state.ErrNoConfig) {
		return n.enterMaintenance()
	}
	if err != nil {
		return err
	}
	cfg, err := config.Load(data)
	if err != nil {
		// Never overwrite what the operator applied; make them fix it.
		n.log.Error("persisted config is invalid; serving maintenance mode so a valid one can be applied", "path", n.store.ConfigPath(), "error", err)
		return n.enterMaintenance()
	}
	cert, pool, err := n.serverIdentity(cfg)
	if err != nil {
		return err
	}
	n.creds = server.NewConfiguredCredentials(cert, pool)
	n.setActive(cfg, data)
	close(n.configured)
	n.log.Info("machine config loaded", "type", cfg.Machine.Type, "cluster", cfg.Cluster.Name)
	return nil
}

// hostname is the node's name once configured (nodeName), else the OS's.
func (n *Node) hostname(cfg *config.Config) string {
	if cfg != nil {
		return n.nodeName(cfg)
	}
	h, _ := os.Hostname()
	return h
}

// setActive makes cfg the active config and wakes everything that follows it.
func (n *Node) setActive(cfg *config.Config, data []byte) {
	n.mu.Lock()
	n.cfgBytes = data
	n.mu.Unlock()
	n.desired.Set(cfg)
}

// Config returns the active config (nil in maintenance mode) and a channel
// closed at the next change.
func (n *Node) Config() (*config.Config, <-chan struct{}) {
	return n.desired.Get()
}

func (n *Node) request(a Action) {
	select {
	case n.actions <- a:
	default: // an action is already pending; the first one wins
	}
}
