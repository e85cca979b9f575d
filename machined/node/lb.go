package node

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ballast-os/ballast/machined/lb"
	"github.com/ballast-os/ballast/pkg/config"
)

// apiserverPort is where kube-apiserver listens on control planes.
const apiserverPort = "6443"

// lbRefresh is how often a control plane re-reads the etcd membership for
// the balancer's upstreams (config changes apply at once).
const lbRefresh = 5 * time.Second

// runLB is the lb service: the API load balancer, its upstreams kept current
// from the config (endpoint and peers) and, on control planes, the etcd
// membership.
func (n *Node) runLB(ctx context.Context, out io.Writer) error {
	ln, err := lb.Listen(ctx, n.lbAddr())
	if err != nil {
		return fmt.Errorf("listen for the API load balancer: %w", err)
	}
	b := n.lb
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		var last []string
		for {
			cfg, changed := n.Config()
			if ups := n.lbUpstreams(ctx, cfg); !slices.Equal(ups, last) {
				b.SetUpstreams(ups)
				fmt.Fprintf(out, "upstreams: %v\n", ups)
				last = ups
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-n.clock.After(lbRefresh):
			}
		}
	}()
	return b.Run(ctx, ln)
}

// lbUpstreams are the apiservers the balancer proxies to: every control
// plane in the etcd membership (on control planes) and in the config's
// peers. The endpoint's host is used only when nothing else is known: it is
// the VIP (or a name for it), which leads to one of them anyway.
func (n *Node) lbUpstreams(ctx context.Context, cfg *config.Config) []string {
	if cfg == nil {
		return nil
	}
	var hosts []string
	for _, p := range cfg.Cluster.Etcd.Peers {
		hosts = append(hosts, p)
	}
	n.mu.Lock()
	mgr := n.etcdMgr
	n.mu.Unlock()
	if mgr != nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if list, err := mgr.Members(cctx); err == nil {
			for _, m := range list.Members {
				for _, u := range m.ClientURLs {
					if ap, err := netip.ParseAddrPort(trimScheme(u)); err == nil {
						hosts = append(hosts, ap.Addr().String())
					}
				}
			}
		}
		cancel()
	}
	if len(hosts) == 0 {
		// Nothing else is known: the endpoint's host (the VIP) it is.
		hosts = cfg.ControlPlaneAddrs()
	}
	return lb.Hosts(hosts, apiserverPort)
}

func trimScheme(u string) string {
	if _, rest, ok := strings.Cut(u, "://"); ok {
		return rest
	}
	return u
}
