package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"time"
)

// Validate checks c (with defaults applied, on a copy) and returns a
// *ValidationError listing every problem, or nil when c is valid. Problems
// carry the source line of their field when c came from Decode.
func (c *Config) Validate() error {
	if c == nil {
		return &ValidationError{Problems: []Problem{{Message: "no config"}}}
	}
	v := &validator{c: c.WithDefaults(), lines: c.lines}
	v.validate()
	if len(v.problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: v.problems}
}

// Load decodes data strictly and validates the result. Errors match
// ErrInvalid; they are a *DecodeError or a *ValidationError.
func Load(data []byte) (*Config, error) {
	c, err := Decode(data)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// validator accumulates the problems of one config.
type validator struct {
	c        *Config
	lines    map[string]int
	problems []Problem

	// controlPlane and worker are both false when the machine type is
	// invalid: role-specific rules are then skipped.
	controlPlane, worker bool
}

// addf records a problem at path.
func (v *validator) addf(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{
		Path:    path,
		Line:    v.lines[path],
		Message: fmt.Sprintf(format, args...),
	})
}

func (v *validator) validate() {
	c := v.c
	switch c.Version {
	case Version:
	case "":
		v.addf("version", "required (want %q)", Version)
	default:
		v.addf("version", "unsupported version %q (want %q)", c.Version, Version)
	}
	v.machine()
	v.cluster()
}

func (v *validator) machine() {
	m := &v.c.Machine
	switch m.Type {
	case TypeControlPlane:
		v.controlPlane = true
	case TypeWorker:
		v.worker = true
	case "":
		v.addf("machine.type", "required (want one of: %s, %s)", TypeControlPlane, TypeWorker)
	default:
		v.addf("machine.type", "%q is not a valid machine type (want one of: %s, %s)", m.Type, TypeControlPlane, TypeWorker)
	}
	v.token("machine.token", m.Token)
	v.certAndKey("machine.ca", m.CA, true)
	v.sans("machine.certSANs", m.CertSANs)
	v.network()
	v.kubelet()
	for i, s := range m.Time.Servers {
		host := s
		if h, _, err := net.SplitHostPort(s); err == nil {
			host = h
		}
		if !isHost(host) {
			v.addf(fmt.Sprintf("machine.time.servers[%d]", i), "%q is not a host name, IP address or host:port", s)
		}
	}
	for i, d := range m.Logging.Destinations {
		p := fmt.Sprintf("machine.logging.destinations[%d]", i)
		u, err := url.Parse(d.Endpoint)
		switch {
		case err != nil || (u.Scheme != "tcp" && u.Scheme != "udp") || u.Host == "" || u.Path != "":
			v.addf(p+".endpoint", "%q is not tcp://HOST:PORT or udp://HOST:PORT", d.Endpoint)
		case u.Port() == "" || !isHost(u.Hostname()):
			v.addf(p+".endpoint", "%q needs a host and a port (e.g. tcp://10.5.0.1:5140)", d.Endpoint)
		}
		if d.Format != "" && d.Format != "json_lines" {
			v.addf(p+".format", "%q is not a log format (want json_lines)", d.Format)
		}
	}
	if b := m.Time.BootTimeout; b < 0 || b > Duration(10*time.Minute) {
		v.addf("machine.time.bootTimeout", "%s is out of range (0 to 10m)", b.Std())
	}
	if d := m.Install.Disk; d != "" && !isDevicePath(d) {
		v.addf("machine.install.disk", "%q is not a device path under /dev/ (e.g. /dev/sda)", d)
	}
	if b := m.Install.Bundle; b != "" {
		if u, err := url.Parse(b); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.addf("machine.install.bundle", "%q is not an http(s) URL of a bundle directory", b)
		}
	}
	if sel := m.Install.DiskSelector; sel != nil {
		v.diskSelector(sel, m.Install.Disk != "")
	}
}

// diskSelector checks machine.install.diskSelector.
func (v *validator) diskSelector(sel *DiskSelector, withDisk bool) {
	const p = "machine.install.diskSelector"
	if withDisk {
		v.addf(p, "set either machine.install.disk or machine.install.diskSelector, not both")
	}
	if *sel == (DiskSelector{}) {
		v.addf(p, "empty: set at least one of minSize, maxSize, model, serial, type")
	}
	var lo, hi uint64
	for _, f := range []struct {
		name, val string
		to        *uint64
	}{{"minSize", sel.MinSize, &lo}, {"maxSize", sel.MaxSize, &hi}} {
		if f.val == "" {
			continue
		}
		n, err := ParseSize(f.val)
		if err != nil {
			v.addf(p+"."+f.name, "%v", err)
		}
		*f.to = n
	}
	if lo > 0 && hi > 0 && lo > hi {
		v.addf(p+".maxSize", "%s is below minSize %s", sel.MaxSize, sel.MinSize)
	}
	for _, f := range []struct{ name, val string }{{"model", sel.Model}, {"serial", sel.Serial}} {
		if _, err := path.Match(f.val, ""); err != nil {
			v.addf(p+"."+f.name, "%q is not a valid pattern: %v", f.val, err)
		}
	}
	switch sel.Type {
	case "", "ssd", "hdd", "nvme":
	default:
		v.addf(p+".type", "%q is not a disk type (ssd, hdd or nvme)", sel.Type)
	}
}

func (v *validator) network() {
	n := &v.c.Machine.Network
	if n.Hostname != "" && !isDNSName(n.Hostname) {
		v.addf("machine.network.hostname", "%q is not a valid hostname (lowercase letters, digits, '-' and '.')", n.Hostname)
	}
	for i, ns := range n.Nameservers {
		if _, err := netip.ParseAddr(ns); err != nil {
			v.addf(fmt.Sprintf("machine.network.nameservers[%d]", i), "%q is not a valid IP address", ns)
		}
	}
	seen := make(map[string]int)
	for i := range n.Interfaces {
		v.iface(fmt.Sprintf("machine.network.interfaces[%d]", i), &n.Interfaces[i], i, seen)
	}
}

func (v *validator) iface(p string, in *Interface, i int, seen map[string]int) {
	switch {
	case in.Interface == "":
		v.addf(p+".interface", "required (the link name, e.g. eth0)")
	case !isLinkName(in.Interface):
		v.addf(p+".interface", "%q is not a valid link name (at most 15 characters, no '/', ':' or whitespace)", in.Interface)
	default:
		if first, dup := seen[in.Interface]; dup {
			v.addf(p+".interface", "duplicate interface %q (also interfaces[%d])", in.Interface, first)
		} else {
			seen[in.Interface] = i
		}
	}
	for j, a := range in.Addresses {
		if _, err := netip.ParsePrefix(a); err != nil {
			v.addf(fmt.Sprintf("%s.addresses[%d]", p, j), "%q is not a valid CIDR address (want e.g. 10.0.0.2/24)", a)
		}
	}
	for j, r := range in.Routes {
		v.route(fmt.Sprintf("%s.routes[%d]", p, j), r)
	}
	if in.MTU != 0 && (in.MTU < 68 || in.MTU > 65535) {
		v.addf(p+".mtu", "%d is out of range (want 68-65535, or 0 for the default)", in.MTU)
	}
	if in.VIP != nil {
		if v.worker {
			v.addf(p+".vip", "a VIP is only allowed on %s nodes", TypeControlPlane)
		}
		switch a, err := netip.ParseAddr(in.VIP.IP); {
		case in.VIP.IP == "":
			v.addf(p+".vip.ip", "required")
		case err != nil:
			v.addf(p+".vip.ip", "%q is not a valid IP address", in.VIP.IP)
		case !a.Is4():
			v.addf(p+".vip.ip", "%q: only IPv4 VIPs are supported", in.VIP.IP)
		}
		ttl, renew := in.VIP.TTL, in.VIP.RenewInterval
		if ttl == 0 {
			ttl = DefaultVIPTTL
		}
		if renew == 0 {
			renew = DefaultVIPRenewInterval
		}
		if ttl < MinVIPTTL {
			v.addf(p+".vip.ttl", "must be at least %s (got %s)", MinVIPTTL.Std(), ttl.Std())
		}
		if renew <= 0 || renew > ttl/4 {
			v.addf(p+".vip.renewInterval", "must be positive and at most a quarter of the TTL %s (got %s)", ttl.Std(), renew.Std())
		}
	}
}

func (v *validator) route(p string, r Route) {
	var network netip.Prefix
	if r.Network != "" {
		var err error
		if network, err = netip.ParsePrefix(r.Network); err != nil {
			v.addf(p+".network", "%q is not a valid CIDR network (want e.g. 10.0.0.0/8, or empty for the default route)", r.Network)
		}
	}
	if r.Gateway != "" {
		gw, err := netip.ParseAddr(r.Gateway)
		switch {
		case err != nil:
			v.addf(p+".gateway", "%q is not a valid IP address", r.Gateway)
		case network.IsValid() && gw.Unmap().Is4() != network.Addr().Unmap().Is4():
			v.addf(p+".gateway", "%q is not of the same address family as network %q", r.Gateway, r.Network)
		}
	}
	if r.Metric < 0 {
		v.addf(p+".metric", "must not be negative (got %d)", r.Metric)
	}
}

// token checks a required token of the form [a-z0-9]{6}.[a-z0-9]{16}. The
// value is a secret and never appears in messages.
func (v *validator) token(p, tok string) {
	switch {
	case tok == "":
		v.addf(p, "required (format [a-z0-9]{6}.[a-z0-9]{16})")
	case !tokenRE.MatchString(tok):
		v.addf(p, "is not a valid token (want 6 and 16 characters of [a-z0-9] joined by '.')")
	}
}

// sans checks a list of certificate subject alternative names.
func (v *validator) sans(p string, sans []string) {
	for i, s := range sans {
		if !isSAN(s) {
			v.addf(fmt.Sprintf("%s[%d]", p, i), "%q is not a valid DNS name or IP address", s)
		}
	}
}

// certAndKey checks a CA: the certificate is required when required is
// set; the key is required on control-plane nodes and forbidden on workers.
func (v *validator) certAndKey(p string, ck *CertAndKey, required bool) {
	if ck == nil {
		switch {
		case required && v.controlPlane:
			v.addf(p, "required (crt and key)")
		case required:
			v.addf(p, "required (crt)")
		}
		return
	}
	crtPath, keyPath := p+".crt", p+".key"
	cert, err := parseCACert(ck.Crt)
	switch {
	case ck.Crt == "":
		v.addf(crtPath, "required (base64-encoded PEM certificate)")
	case err != nil:
		v.addf(crtPath, "%s", err)
	}
	switch {
	case ck.Key == "" && v.controlPlane:
		v.addf(keyPath, "required on %s nodes (base64-encoded PEM private key)", TypeControlPlane)
	case ck.Key == "":
	case v.worker:
		v.addf(keyPath, "workers must not hold CA private keys")
	default:
		key, err := parsePrivateKey(ck.Key)
		switch {
		case err != nil:
			v.addf(keyPath, "%s", err)
		case cert != nil && !keyMatches(key, cert):
			v.addf(keyPath, "private key does not match the certificate in %s", crtPath)
		}
	}
}

// flags checks the extraArgs of a control-plane component.
func (v *validator) flags(p string, args map[string]string) {
	for _, k := range sortedKeys(args) {
		switch {
		case strings.TrimSpace(k) == "":
			v.addf(mapKeyPath(p, k), "flag name must not be empty")
		case strings.HasPrefix(k, "-"):
			v.addf(mapKeyPath(p, k), "write the flag name without dashes (%q, not %q)", strings.TrimLeft(k, "-"), k)
		}
	}
}
