// Package podnetwork is the controller of a node's pod network (host-gw,
// no overlay): it writes the node's CNI config for its pod CIDR (Debian's
// bridge and host-local plugins) and keeps one route per other node, that
// node's pod CIDR via its InternalIP — the nodes share a link. Routes it
// owns carry RouteProtocol; those to CIDRs no node has any more are
// removed.
package podnetwork

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/machined/kube"
	"github.com/ballast-os/ballast/machined/network"
	"github.com/ballast-os/ballast/pkg/atomicfile"
)

// Service is the controller's name as a supervised service.
const Service = "pod-network"

// RouteProtocol marks the routes the pod network owns.
const RouteProtocol = network.ProtoPods

// ConfName is the node's CNI config file.
const ConfName = "10-ballast.conflist"

// Bridge is the pods' bridge in the node's network namespace.
const Bridge = "cni0"

// Resync is how often the controller reconciles without a change to any
// Node.
const Resync = 30 * time.Second

// Kube is what the controller reads from the Kubernetes API.
type Kube interface {
	WatchNodes(ctx context.Context) (kube.Store, <-chan struct{})
}

// Controller is the pod-network controller of one node.
type Controller struct {
	// Kube reads the Nodes (with the kubelet's credentials: the bootstrap
	// manifests let nodes list and watch Nodes).
	Kube Kube
	// Node is this node's name.
	Node  string
	Paths k8s.KubeletPaths
	Clock clock.Clock
}

// Run enables IPv4 forwarding and reconciles on every Node change and
// every Resync until ctx ends.
func (c *Controller) Run(ctx context.Context, out io.Writer) error {
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	store, kick := c.Kube.WatchNodes(ctx)
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-c.Clock.After(Resync):
		}
		var nodes []*corev1.Node
		for _, o := range store.List() {
			nodes = append(nodes, o.(*corev1.Node))
		}
		err := reconcile(c.Node, nodes, c.Paths, out)
		if msg := fmt.Sprint(err); err != nil && msg != lastErr {
			fmt.Fprintf(out, "pod network: %v\n", err)
		}
		lastErr = fmt.Sprint(err)
	}
}

// reconcile writes this node's CNI config and sets the routes to the
// other nodes' pod CIDRs, removing routes to CIDRs no node has any more.
func reconcile(self string, nodes []*corev1.Node, p k8s.KubeletPaths, out io.Writer) error {
	var errs []error
	want := map[string]net.IP{}
	for _, nd := range nodes {
		cidrs := nd.Spec.PodCIDRs
		if len(cidrs) == 0 && nd.Spec.PodCIDR != "" {
			cidrs = []string{nd.Spec.PodCIDR}
		}
		if nd.Name == self {
			if len(cidrs) > 0 {
				changed, err := writeCNIConfig(p, cidrs)
				if err != nil {
					errs = append(errs, err)
				} else if changed {
					fmt.Fprintf(out, "CNI config for pod CIDRs %s written\n", strings.Join(cidrs, ", "))
				}
			}
			continue
		}
		ip := internalIP(nd)
		if ip == nil {
			continue
		}
		for _, c := range cidrs {
			want[c] = ip
		}
	}
	have, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for cidr, gw := range want {
		_, dst, err := net.ParseCIDR(cidr)
		if err != nil || dst.IP.To4() == nil {
			continue // IPv6 pod CIDRs are not routed here yet
		}
		if slices.ContainsFunc(have, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.String() == dst.String() && r.Gw.Equal(gw) }) {
			continue
		}
		if err := netlink.RouteReplace(&netlink.Route{Dst: dst, Gw: gw, Protocol: RouteProtocol}); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s: %w", cidr, gw, err))
			continue
		}
		fmt.Fprintf(out, "route %s via %s\n", cidr, gw)
	}
	for _, r := range have {
		if r.Dst == nil {
			continue
		}
		if _, ok := want[r.Dst.String()]; ok {
			continue
		}
		if err := netlink.RouteDel(&r); err != nil {
			errs = append(errs, fmt.Errorf("remove route %s: %w", r.Dst, err))
			continue
		}
		fmt.Fprintf(out, "removed route %s via %s\n", r.Dst, r.Gw)
	}
	return errors.Join(errs...)
}

func internalIP(nd *corev1.Node) net.IP {
	for _, a := range nd.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip := net.ParseIP(a.Address); ip != nil && ip.To4() != nil {
				return ip
			}
		}
	}
	return nil
}

// CNIConfig renders the node's CNI config list: a bridge with host-local
// addresses from the node's pod CIDRs (the bridge is the pods' gateway;
// no masquerading: pod addresses are routed between nodes). forceAddress
// moves the bridge to a new CIDR's gateway: a renamed machine is a new Node
// with a new pod CIDR, and without it the plugin refuses every new pod
// ("cni0 already has an IP address different from …").
func CNIConfig(cidrs []string, dataDir string) ([]byte, error) {
	var ranges [][]map[string]string
	for _, c := range cidrs {
		ranges = append(ranges, []map[string]string{{"subnet": c}})
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "ballast",
		"plugins": []any{
			map[string]any{
				"type":         "bridge",
				"bridge":       Bridge,
				"isGateway":    true,
				"forceAddress": true,
				"ipMasq":       false,
				"hairpinMode":  true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  ranges,
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": dataDir,
				},
			},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

func writeCNIConfig(p k8s.KubeletPaths, cidrs []string) (bool, error) {
	data, err := CNIConfig(cidrs, p.CNIDataDir)
	if err != nil {
		return false, err
	}
	path := filepath.Join(p.CNIConfDir, ConfName)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return false, fmt.Errorf("CNI config: %w", err)
	}
	return true, nil
}
