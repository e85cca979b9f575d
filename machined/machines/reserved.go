package machines

import (
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/ballast-os/ballast/pkg/config"
)

// Reserved is what a machine's certificate must never name: the
// control planes' names and addresses as this signer knows them, and the
// cluster's own (the apiserver's in-cluster names, the DNS domain, the
// Service and pod ranges).
type Reserved struct {
	names []string
	ips   []net.IP
	// suffixes: a name equal to one or ending in "."+one is reserved.
	suffixes []string
	nets     []netip.Prefix
}

// Name reports whether host (lower case) is reserved; localhost
// always is.
func (r *Reserved) Name(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || slices.Contains(r.names, host) {
		return true
	}
	return slices.ContainsFunc(r.suffixes, func(s string) bool { return host == s || strings.HasSuffix(host, "."+s) })
}

// IP reports whether ip is reserved. Loopback is not: nodes of a
// local cluster on one host's loopback are told apart by it (a kubelet
// serving certificate never names it: the serving-CSR approver refuses it).
func (r *Reserved) IP(ip net.IP) bool {
	if ip.IsUnspecified() || ip.IsMulticast() || slices.ContainsFunc(r.ips, ip.Equal) {
		return true
	}
	a, ok := netip.AddrFromSlice(ip)
	return ok && slices.ContainsFunc(r.nets, func(p netip.Prefix) bool { return p.Contains(a.Unmap()) })
}

// ClusterReserved are the cluster's own names and ranges: "kubernetes" and
// every name under it (kubernetes.default.svc…), localhost, the cluster DNS
// domain and "svc", the endpoint's name (an endpoint address may be a
// control plane's own), the VIPs, and the Service and pod subnets.
func ClusterReserved(cfg *config.Config) Reserved {
	var r Reserved
	r.suffixes = append(r.suffixes, "kubernetes", "svc")
	if d := strings.ToLower(strings.TrimSuffix(cfg.Cluster.Network.DNSDomain, ".")); d != "" {
		r.suffixes = append(r.suffixes, d)
	}
	if u, err := url.Parse(cfg.Cluster.ControlPlane.Endpoint); err == nil && net.ParseIP(u.Hostname()) == nil {
		r.AddHost(u.Hostname())
	}
	for _, iface := range cfg.Machine.Network.Interfaces {
		if iface.VIP != nil {
			r.AddHost(iface.VIP.IP)
		}
	}
	for _, s := range append(slices.Clone(cfg.Cluster.Network.ServiceSubnets), cfg.Cluster.Network.PodSubnets...) {
		if p, err := netip.ParsePrefix(s); err == nil {
			r.nets = append(r.nets, p.Masked())
		}
	}
	return r
}

// AddHost reserves a name or an address (a port is ignored).
func (r *Reserved) AddHost(h string) {
	if h == "" {
		return
	}
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	if ip := net.ParseIP(h); ip != nil {
		r.ips = append(r.ips, ip)
		return
	}
	r.names = append(r.names, strings.ToLower(h))
}

// AddURL reserves the host of a URL.
func (r *Reserved) AddURL(u string) {
	if pu, err := url.Parse(u); err == nil {
		r.AddHost(pu.Hostname())
	}
}
