package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// ip runs one iproute2 command.
func ip(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "ip", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// names are the kernel object names of a cluster: interface names are at
// most 15 characters, so they carry a short hash of the cluster name.
type names struct {
	bridge string
	prefix string // of namespaces
	veth   string // prefix of host-side veths
}

func namesFor(cluster string) names {
	sum := sha256.Sum256([]byte(cluster))
	h := hex.EncodeToString(sum[:])[:6]
	return names{bridge: "bst" + h, prefix: "ballast-" + cluster + "-", veth: "bv" + h}
}

// plan assigns addresses: the gateway takes the first host address, the
// nodes the following ones.
func plan(cidr string, count int) (netip.Prefix, netip.Addr, []netip.Addr, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, netip.Addr{}, nil, fmt.Errorf("--cidr %q: want an IPv4 network such as 10.5.0.0/24", cidr)
	}
	p = p.Masked()
	gw := p.Addr().Next()
	addrs := make([]netip.Addr, 0, count)
	a := gw
	for range count {
		a = a.Next()
		if !p.Contains(a) || a == lastAddr(p) {
			return netip.Prefix{}, netip.Addr{}, nil, fmt.Errorf("--cidr %s has room for fewer than %d nodes", cidr, count)
		}
		addrs = append(addrs, a)
	}
	return p, gw, addrs, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	bits := p.Bits()
	for i := bits; i < 32; i++ {
		a[i/8] |= 1 << (7 - uint(i%8))
	}
	return netip.AddrFrom4(a)
}

// setupBridge creates the bridge with the gateway address.
func setupBridge(ctx context.Context, n names, p netip.Prefix, gw netip.Addr) error {
	if err := ip(ctx, "link", "add", n.bridge, "type", "bridge"); err != nil {
		return err
	}
	if err := ip(ctx, "addr", "add", fmt.Sprintf("%s/%d", gw, p.Bits()), "dev", n.bridge); err != nil {
		return err
	}
	return ip(ctx, "link", "set", n.bridge, "up")
}

// setupNode creates the node's namespace and wires it to the bridge.
func setupNode(ctx context.Context, n names, node NodeState, p netip.Prefix, gw netip.Addr) error {
	steps := [][]string{
		{"netns", "add", node.Netns},
		{"link", "add", node.Veth, "type", "veth", "peer", "name", "eth0", "netns", node.Netns},
		{"link", "set", node.Veth, "master", n.bridge, "up"},
		{"-n", node.Netns, "link", "set", "lo", "up"},
		{"-n", node.Netns, "addr", "add", fmt.Sprintf("%s/%d", node.Address, p.Bits()), "dev", "eth0"},
		{"-n", node.Netns, "link", "set", "eth0", "up"},
		{"-n", node.Netns, "route", "add", "default", "via", gw.String()},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return fmt.Errorf("node %s: %w", node.Name, err)
		}
	}
	return nil
}

// netnsList returns the named namespaces.
func netnsList(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

func execOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return string(out), err
}
