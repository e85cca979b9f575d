package config

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

func (v *validator) cluster() {
	c := &v.c.Cluster
	switch {
	case c.Name == "":
		v.addf("cluster.name", "required")
	case !isDNSLabel(c.Name):
		v.addf("cluster.name", "%q is not a valid cluster name (a DNS label: at most 63 lowercase letters, digits and '-')", c.Name)
	}
	v.endpoint("cluster.controlPlane.endpoint", c.ControlPlane.Endpoint)
	v.clusterNetwork()
	if !kubernetesVersionRE.MatchString(c.KubernetesVersion) {
		v.addf("cluster.kubernetesVersion", "%q is not a valid Kubernetes version (want e.g. %s)", c.KubernetesVersion, DefaultKubernetesVersion)
	}
	if c.Token != "" {
		v.token("cluster.token", c.Token)
	}
	v.secretbox()
	v.certAndKey("cluster.ca", c.CA, true)
	if v.worker && c.AggregatorCA != nil {
		v.addf("cluster.aggregatorCA", "workers must not hold CA private keys (aggregatorCA is for %s nodes only)", TypeControlPlane)
	} else {
		v.certAndKey("cluster.aggregatorCA", c.AggregatorCA, v.controlPlane)
	}
	if v.worker && c.KubeletServingCA != nil {
		v.addf("cluster.kubeletServingCA", "workers must not hold CA private keys (kubeletServingCA is for %s nodes only)", TypeControlPlane)
	} else {
		v.certAndKey("cluster.kubeletServingCA", c.KubeletServingCA, v.controlPlane)
	}
	v.serviceAccount()
	if l := c.CertificateLifetime; l != 0 && (l < MinCertificateLifetime || l > Duration(10*365*24*time.Hour)) {
		v.addf("cluster.certificateLifetime", "%s is out of range (%s to 87600h)", l.Std(), MinCertificateLifetime.Std())
	}
	v.etcd()
	v.component("cluster.apiServer", c.APIServer)
	v.component("cluster.controllerManager", c.ControllerManager)
	v.component("cluster.scheduler", c.Scheduler)
}

func (v *validator) endpoint(p, s string) {
	if s == "" {
		v.addf(p, "required (e.g. https://10.0.0.5:6443)")
		return
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		v.addf(p, "%q is not a valid URL", s)
	case u.Scheme != "https":
		v.addf(p, "%q must be an https:// URL (e.g. https://10.0.0.5:6443)", s)
	case u.Hostname() == "":
		v.addf(p, "%q has no host", s)
	case !isHost(u.Hostname()):
		v.addf(p, "%q: host %q is not a valid DNS name or IP address", s, u.Hostname())
	case u.Port() == "":
		v.addf(p, "%q has no port (e.g. https://10.0.0.5:6443)", s)
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		v.addf(p, "%q must be just https://host:port", s)
	default:
		if err := checkPort(u.Port()); err != nil {
			v.addf(p, "%q: %s", s, err)
		}
	}
}

func (v *validator) clusterNetwork() {
	n := &v.c.Cluster.Network
	if !isDNSName(n.DNSDomain) {
		v.addf("cluster.network.dnsDomain", "%q is not a valid DNS domain", n.DNSDomain)
	}
	pods := v.subnets("cluster.network.podSubnets", n.PodSubnets)
	services := v.subnets("cluster.network.serviceSubnets", n.ServiceSubnets)
	for j, s := range services {
		for i, p := range pods {
			if s.IsValid() && p.IsValid() && s.Overlaps(p) {
				v.addf(fmt.Sprintf("cluster.network.serviceSubnets[%d]", j),
					"%q overlaps podSubnets[%d] %q", n.ServiceSubnets[j], i, n.PodSubnets[i])
			}
		}
	}
}

// subnets parses a list of CIDRs; invalid entries are reported and left as
// the zero Prefix.
func (v *validator) subnets(p string, list []string) []netip.Prefix {
	out := make([]netip.Prefix, len(list))
	for i, s := range list {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			v.addf(fmt.Sprintf("%s[%d]", p, i), "%q is not a valid CIDR (want e.g. 10.244.0.0/16)", s)
			continue
		}
		out[i] = pfx
	}
	return out
}

func (v *validator) secretbox() {
	s := v.c.Cluster.SecretboxEncryptionSecret
	const p = "cluster.secretboxEncryptionSecret"
	if s == "" {
		if v.controlPlane {
			v.addf(p, "required on %s nodes (base64 of 32 random bytes)", TypeControlPlane)
		}
		return
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	switch {
	case err != nil:
		v.addf(p, "is not valid base64 (want base64 of 32 random bytes)")
	case len(raw) != 32:
		v.addf(p, "must be the base64 encoding of exactly 32 bytes (got %d)", len(raw))
	}
}

func (v *validator) serviceAccount() {
	sa := v.c.Cluster.ServiceAccount
	const p = "cluster.serviceAccount"
	switch {
	case sa == nil && v.controlPlane:
		v.addf(p, "required on %s nodes (key)", TypeControlPlane)
	case sa == nil:
	case v.worker:
		v.addf(p, "workers must not hold CA private keys (serviceAccount is for %s nodes only)", TypeControlPlane)
	case sa.Key == "":
		v.addf(p+".key", "required (base64-encoded PEM private key)")
	default:
		if _, err := parsePrivateKey(sa.Key); err != nil {
			v.addf(p+".key", "%s", err)
		}
	}
}

func (v *validator) etcd() {
	e := &v.c.Cluster.Etcd
	const p = "cluster.etcd"
	v.certAndKey(p+".ca", e.CA, v.controlPlane)
	for i, peer := range e.Peers {
		if err := checkPeer(peer); err != nil {
			v.addf(fmt.Sprintf("%s.peers[%d]", p, i), "%s", err)
		}
	}
	if e.HeartbeatInterval <= 0 {
		v.addf(p+".heartbeatInterval", "must be positive (got %s)", e.HeartbeatInterval.Std())
	} else if e.ElectionTimeout < 5*e.HeartbeatInterval {
		v.addf(p+".electionTimeout", "must be at least 5 × heartbeatInterval (%s), got %s",
			(5 * e.HeartbeatInterval).Std(), e.ElectionTimeout.Std())
	}
	if e.QuotaBackendBytes < 0 || e.QuotaBackendBytes > MaxEtcdQuotaBackendBytes {
		v.addf(p+".quotaBackendBytes", "must be between 0 and 8 GiB (%d), got %d", MaxEtcdQuotaBackendBytes, e.QuotaBackendBytes)
	}
	if s := e.Snapshots; s != nil {
		if s.Interval.Std() < time.Minute {
			v.addf(p+".snapshots.interval", "must be at least 1m (got %s)", s.Interval.Std())
		}
		if s.Keep < 1 {
			v.addf(p+".snapshots.keep", "must be at least 1 (got %d)", s.Keep)
		}
	}
}

func (v *validator) component(p string, c Component) {
	v.flags(p+".extraArgs", c.ExtraArgs)
	v.sans(p+".certSANs", c.CertSANs)
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
