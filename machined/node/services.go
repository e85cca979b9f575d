package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/ballast-os/ballast/machined/lb"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/server"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/config"
)

// Service IDs.
const (
	apidService    = "apid"
	metricsService = "metrics"
	lbService      = "lb"
	networkService = "network"
)

// MetricsPort is the Prometheus metrics port on the API address.
const MetricsPort = 50001

// registerServices adds the services every node runs.
func (n *Node) registerServices() error {
	api := server.New(n.creds, n, n.log.With("component", apidService))
	specs := []supervisor.Spec{
		{
			ID:          apidService,
			Description: "machine API (gRPC, TLS) on " + n.opts.Listener.Addr().String(),
			Runner: runner.Goroutine(apidService, func(ctx context.Context, _ io.Writer) error {
				return api.Run(ctx, n.opts.Listener)
			}),
			Restart: supervisor.Once,
		},
		{
			ID:          metricsService,
			Description: "Prometheus metrics on port " + strconv.Itoa(MetricsPort) + " of the node's address (machine.metrics.mtls: client certificates)",
			Conditions:  []supervisor.Condition{{Name: "machine config applied", Wait: n.waitConfigured}},
			Runner:      runner.Goroutine(metricsService, n.runMetrics),
			Restart:     supervisor.Always,
			Health: &supervisor.HealthCheck{
				Check:            n.probeMetrics,
				FailureThreshold: 3,
			},
		},
	}
	// On metal the network comes up in maintenance mode too (DHCP on every
	// link), so the API and the boot config are reachable.
	netConds := []supervisor.Condition{{Name: "machine config applied", Wait: n.waitConfigured}}
	if n.opts.Mode == ModeMetal {
		netConds = nil
		if n.creds.Maintenance() {
			specs = append(specs, supervisor.Spec{
				ID:          bootConfigService,
				Description: "applies the config named on the kernel command line (ballast.config, ballast.platform=nocloud)",
				Runner:      runner.Goroutine(bootConfigService, n.runBootConfig),
				Restart:     supervisor.OnFailure,
			})
		}
	}
	specs = append(specs, supervisor.Spec{
		ID:          networkService,
		Description: "applies machine.network through netlink (links, MTU, addresses, routes), DHCPv4 leases, resolvers",
		Conditions:  netConds,
		Runner:      runner.Goroutine(networkService, n.network.Run),
		Restart:     supervisor.Always,
	}, supervisor.Spec{
		ID:          timeService,
		Description: "NTP: steps the clock at boot, then slews it (metal); measures only (container)",
		Conditions:  []supervisor.Condition{{Name: "machine config applied", Wait: n.waitConfigured}},
		Runner:      runner.Goroutine(timeService, n.timesync.Run),
		Restart:     supervisor.Always,
	}, supervisor.Spec{
		ID:          lbService,
		Description: "API load balancer on " + n.lbAddr() + " to every known kube-apiserver",
		Conditions:  []supervisor.Condition{{Name: "machine config applied", Wait: n.waitConfigured}},
		Runner:      runner.Goroutine(lbService, n.runLB),
		Restart:     supervisor.Always,
	}, supervisor.Spec{
		ID:          logShipService,
		Description: "sends every service's log lines (and a machine's kernel log) to machine.logging.destinations as JSON lines",
		Conditions:  []supervisor.Condition{{Name: "machine config applied", Wait: n.waitConfigured}},
		Runner:      runner.Goroutine(logShipService, n.logShipper().Run),
		Restart:     supervisor.Always,
	})
	for _, s := range specs {
		if err := n.sup.Add(s); err != nil {
			return fmt.Errorf("register service %s: %w", s.ID, err)
		}
	}
	if cfg, _ := n.Config(); cfg != nil {
		return n.startRoleServices(cfg)
	}
	return nil
}

func (n *Node) waitConfigured(ctx context.Context) error { return waitClosed(ctx, n.configured) }

// lbAddr is where the API load balancer listens: 127.0.0.1:7445 in the
// node's own network namespace. Nodes that share the host's loopback (by
// hand or in tests, each on its own 127.0.0.x API address) use their API
// address instead, so they do not collide.
func (n *Node) lbAddr() string {
	host, _, err := net.SplitHostPort(n.opts.Listener.Addr().String())
	if ip := net.ParseIP(host); err == nil && ip != nil && ip.IsLoopback() && !ip.Equal(net.IPv4(127, 0, 0, 1)) {
		return net.JoinHostPort(host, strconv.Itoa(lb.Port))
	}
	return lb.DefaultListen
}

// metricsAddr is where the metrics are served: --metrics-listen, else port
// MetricsPort on the API's address when that is a specific one, else on the
// node's advertise address — never every address.
func (n *Node) metricsAddr(cfg *config.Config) string {
	if n.opts.MetricsListen != "" {
		return n.opts.MetricsListen
	}
	host := n.listenIP()
	if host == "" && cfg != nil {
		host = n.advertiseIP(cfg)
	}
	return net.JoinHostPort(host, strconv.Itoa(MetricsPort))
}
