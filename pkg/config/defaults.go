package config

import "time"

// Defaults filled in by ApplyDefaults.
const (
	DefaultDNSDomain         = "cluster.local"
	DefaultPodSubnet         = "10.244.0.0/16"
	DefaultServiceSubnet     = "10.96.0.0/12"
	DefaultKubernetesVersion = "v1.36.3"

	DefaultEtcdHeartbeatInterval = Duration(100 * time.Millisecond)
	DefaultEtcdElectionTimeout   = Duration(time.Second)
	DefaultEtcdQuotaBackendBytes = int64(2 << 30) // 2 GiB
	DefaultEtcdSnapshotCount     = uint64(10000)

	DefaultCertificateLifetime = Duration(365 * 24 * time.Hour)
	// MinCertificateLifetime leaves the last third of a lifetime (a minute)
	// for the control planes to restart their apiservers one after another
	// before the old certificates expire.
	MinCertificateLifetime = Duration(3 * time.Minute)

	DefaultVIPTTL           = Duration(1800 * time.Millisecond)
	DefaultVIPRenewInterval = Duration(200 * time.Millisecond)
	// MinVIPTTL keeps the TTL above the kernel's address lifetime (1 s, its
	// granularity) plus the holder's refresh window: see docs/vip.md.
	MinVIPTTL = Duration(1500 * time.Millisecond)
)

// MaxEtcdQuotaBackendBytes is the largest etcd backend quota accepted (8 GiB).
const MaxEtcdQuotaBackendBytes = int64(8 << 30)

// ApplyDefaults fills every unset field that has a default, in place.
func (c *Config) ApplyDefaults() {
	if c == nil {
		return
	}
	n := &c.Cluster.Network
	if n.DNSDomain == "" {
		n.DNSDomain = DefaultDNSDomain
	}
	if len(n.PodSubnets) == 0 {
		n.PodSubnets = []string{DefaultPodSubnet}
	}
	if len(n.ServiceSubnets) == 0 {
		n.ServiceSubnets = []string{DefaultServiceSubnet}
	}
	if c.Cluster.KubernetesVersion == "" {
		c.Cluster.KubernetesVersion = DefaultKubernetesVersion
	}
	for i := range c.Machine.Network.Interfaces {
		if vip := c.Machine.Network.Interfaces[i].VIP; vip != nil {
			if vip.TTL == 0 {
				vip.TTL = DefaultVIPTTL
			}
			if vip.RenewInterval == 0 {
				vip.RenewInterval = DefaultVIPRenewInterval
			}
		}
	}
	if c.Cluster.CertificateLifetime == 0 {
		c.Cluster.CertificateLifetime = DefaultCertificateLifetime
	}
	e := &c.Cluster.Etcd
	if e.HeartbeatInterval == 0 {
		e.HeartbeatInterval = DefaultEtcdHeartbeatInterval
	}
	if e.ElectionTimeout == 0 {
		e.ElectionTimeout = DefaultEtcdElectionTimeout
	}
	if e.QuotaBackendBytes == 0 {
		e.QuotaBackendBytes = DefaultEtcdQuotaBackendBytes
	}
	if e.SnapshotCount == 0 {
		e.SnapshotCount = DefaultEtcdSnapshotCount
	}
}

// WithDefaults returns a deep copy of c with defaults applied; c is not
// modified.
func (c *Config) WithDefaults() *Config {
	out := c.DeepCopy()
	if out == nil {
		out = &Config{}
	}
	out.ApplyDefaults()
	return out
}
