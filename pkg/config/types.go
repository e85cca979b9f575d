package config

import (
	"fmt"
	"net/url"
	"slices"
	"time"
)

// Version is the only config document version this package understands.
const Version = "v1alpha1"

// Machine types.
const (
	TypeControlPlane = "controlplane"
	TypeWorker       = "worker"
)

// Config is a machine config document: the desired state of one node.
//
// Field tags are the YAML names users write; every field is documented in
// docs/config.md. Secrets (keys, tokens) are redacted by Redact.
type Config struct {
	Version string  `yaml:"version" json:"version"`
	Machine Machine `yaml:"machine" json:"machine"`
	Cluster Cluster `yaml:"cluster" json:"cluster"`

	// lines maps every field path seen by Decode (as used in error messages,
	// e.g. "machine.network.interfaces[0].mtu") to its line in the source
	// document, so that validation problems can point at the right line.
	lines map[string]int
}

// Machine is the node-local part of the config.
type Machine struct {
	// Type is controlplane or worker.
	Type string `yaml:"type" json:"type"`
	// Token is the machine token: workers present it to a control-plane node
	// to obtain their machine-API certificate.
	Token string `yaml:"token" json:"token"`
	// CA is the OS (machine API) CA. Workers carry only the certificate.
	CA *CertAndKey `yaml:"ca" json:"ca"`
	// CertSANs are extra names and addresses for the machine-API certificate.
	CertSANs []string `yaml:"certSANs,omitempty" json:"certSANs,omitempty"`
	Network  Network  `yaml:"network,omitempty" json:"network,omitempty"`
	Install  Install  `yaml:"install,omitempty" json:"install,omitempty"`
	Kubelet  Kubelet  `yaml:"kubelet,omitempty" json:"kubelet,omitempty"`
	Time     Time     `yaml:"time,omitempty" json:"time,omitempty"`
	Metrics  Metrics  `yaml:"metrics,omitempty" json:"metrics,omitempty"`
	Logging  Logging  `yaml:"logging,omitempty" json:"logging,omitempty"`
}

// Logging configures where the node sends its logs (docs/observability.md).
type Logging struct {
	// Destinations receive every service's log lines (and, on machines,
	// the kernel's) as JSON lines. Live.
	Destinations []LogDestination `yaml:"destinations,omitempty" json:"destinations,omitempty"`
}

// LogDestination is one log receiver.
type LogDestination struct {
	// Endpoint is tcp://HOST:PORT or udp://HOST:PORT.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// Format is json_lines (the default and only one): one JSON object per
	// line with time, node, service, level and msg.
	Format string `yaml:"format,omitempty" json:"format,omitempty"`
}

// Metrics configures the node's Prometheus endpoint (port 50001 on the
// node's address).
type Metrics struct {
	// MTLS serves it over TLS with the machine-API certificate and asks for
	// a client certificate of the OS CA with a role of os:admin,
	// os:operator or os:reader. Live.
	MTLS bool `yaml:"mtls,omitempty" json:"mtls,omitempty"`
}

// Time configures the machine's clock (NTP).
type Time struct {
	// Servers are NTP servers (host or host:port), asked in order. Empty:
	// the servers DHCP gave, else pool.ntp.org (metal mode); container
	// mode asks only the servers named here. Live.
	Servers []string `yaml:"servers,omitempty" json:"servers,omitempty"`
	// Disabled leaves the clock alone (no NTP at all).
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	// BootTimeout bounds the wait at boot for a first answer, before the
	// node mints certificates or starts etcd (default 15s).
	BootTimeout Duration `yaml:"bootTimeout,omitempty" json:"bootTimeout,omitempty"`
}

// Kubelet configures the node's kubelet (every node runs one).
type Kubelet struct {
	// ExtraArgs are kubelet flags (name without dashes → value); they win
	// over Ballast's own, except the flags Ballast must own (paths,
	// credentials, the node's name). Applied live (kubelet restarts).
	ExtraArgs map[string]string `yaml:"extraArgs,omitempty" json:"extraArgs,omitempty"`
	// NodeLabels are set when the node registers, e.g.
	// topology.kubernetes.io/zone. Only labels a kubelet may set itself.
	NodeLabels map[string]string `yaml:"nodeLabels,omitempty" json:"nodeLabels,omitempty"`
	// NodeTaints are set when the node registers: key → "value:Effect" (or
	// ":Effect"), Effect one of NoSchedule, PreferNoSchedule, NoExecute.
	NodeTaints map[string]string `yaml:"nodeTaints,omitempty" json:"nodeTaints,omitempty"`
	// Version is the kubelet release this node runs (default:
	// cluster.kubernetesVersion). `nodectl upgrade-k8s` sets it node by
	// node to move the kubelets after the control-plane components, then
	// clears it. A release other than the one the OS was built with must
	// have been staged on the node first (docs/upgrades.md). Applied live
	// (kubelet restarts).
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
}

// Network is the node's network configuration.
type Network struct {
	Hostname    string      `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	Nameservers []string    `yaml:"nameservers,omitempty" json:"nameservers,omitempty"`
	Interfaces  []Interface `yaml:"interfaces,omitempty" json:"interfaces,omitempty"`
}

// Interface configures one network link.
type Interface struct {
	// Interface is the link name (eth0, enp1s0 …).
	Interface string `yaml:"interface" json:"interface"`
	// DHCP enables DHCPv4 on the link.
	DHCP bool `yaml:"dhcp,omitempty" json:"dhcp,omitempty"`
	// Addresses are static addresses in CIDR notation.
	Addresses []string `yaml:"addresses,omitempty" json:"addresses,omitempty"`
	Routes    []Route  `yaml:"routes,omitempty" json:"routes,omitempty"`
	MTU       int      `yaml:"mtu,omitempty" json:"mtu,omitempty"`
	// VIP is a shared virtual IP held by one healthy control-plane node.
	VIP *VIP `yaml:"vip,omitempty" json:"vip,omitempty"`
}

// Route is a static route; an empty Network means the default route.
type Route struct {
	Network string `yaml:"network,omitempty" json:"network,omitempty"`
	Gateway string `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	Metric  int    `yaml:"metric,omitempty" json:"metric,omitempty"`
}

// VIP is a virtual IP shared by the control-plane nodes: one healthy node
// holds it, elected through etcd (see docs/vip.md).
type VIP struct {
	// IP is the IPv4 address.
	IP string `yaml:"ip" json:"ip"`
	// TTL is how long the holder may go without renewing before another
	// node takes the address over (default 1800ms, at least 1500ms).
	TTL Duration `yaml:"ttl,omitempty" json:"ttl,omitempty"`
	// RenewInterval is how often the holder renews (default 200ms, at most
	// a quarter of the TTL).
	RenewInterval Duration `yaml:"renewInterval,omitempty" json:"renewInterval,omitempty"`
}

// Install says where the OS is installed on bare metal: a machine booted
// from the ISO or PXE writes itself to that disk when its config is applied
// (docs/install.md).
type Install struct {
	// Disk is the device to install to (/dev/sda); DiskSelector picks one
	// instead (the first disk that matches). At most one of them is set.
	Disk         string        `yaml:"disk,omitempty" json:"disk,omitempty"`
	DiskSelector *DiskSelector `yaml:"diskSelector,omitempty" json:"diskSelector,omitempty"`
	Image        string        `yaml:"image,omitempty" json:"image,omitempty"`
	// Bundle is the http(s) URL of an upgrade bundle directory (make
	// bundle's _out/bundle) to install from when the machine has no install
	// medium: a PXE boot.
	Bundle string `yaml:"bundle,omitempty" json:"bundle,omitempty"`
	// Wipe lets the installer overwrite a disk that holds partitions.
	Wipe bool `yaml:"wipe,omitempty" json:"wipe,omitempty"`
}

// DiskSelector matches a disk; every field set must match.
type DiskSelector struct {
	// MinSize and MaxSize bound the disk's size ("10GB", "1.5TiB", "512MiB").
	MinSize string `yaml:"minSize,omitempty" json:"minSize,omitempty"`
	MaxSize string `yaml:"maxSize,omitempty" json:"maxSize,omitempty"`
	// Model and Serial are shell patterns (path.Match) on the disk's model
	// and serial number.
	Model  string `yaml:"model,omitempty" json:"model,omitempty"`
	Serial string `yaml:"serial,omitempty" json:"serial,omitempty"`
	// Type is ssd, hdd or nvme.
	Type string `yaml:"type,omitempty" json:"type,omitempty"`
}

// Selected reports whether the config asks for an install.
func (i Install) Selected() bool { return i.Disk != "" || i.DiskSelector != nil }

// Cluster is the part of the config shared by all nodes of a cluster.
type Cluster struct {
	Name         string       `yaml:"name" json:"name"`
	ControlPlane ControlPlane `yaml:"controlPlane" json:"controlPlane"`
	Network      ClusterNet   `yaml:"network,omitempty" json:"network,omitempty"`
	// KubernetesVersion is the version of the control-plane components.
	KubernetesVersion string `yaml:"kubernetesVersion,omitempty" json:"kubernetesVersion,omitempty"`
	// Token is the Kubernetes bootstrap token of Ballast before 0.17
	// (abcdef.0123456789abcdef). Deprecated and unused: kubelets get their
	// client certificates from a control plane over the machine API and the
	// apiserver accepts no bootstrap token. A control plane deletes the
	// token's Secret (and any other token Secret Ballast made) when it finds it.
	Token string `yaml:"token,omitempty" json:"token,omitempty"`
	// SecretboxEncryptionSecret encrypts Secrets at rest (base64, 32 bytes).
	SecretboxEncryptionSecret string `yaml:"secretboxEncryptionSecret,omitempty" json:"secretboxEncryptionSecret,omitempty"`
	// CA is the Kubernetes CA. Workers carry only the certificate.
	CA *CertAndKey `yaml:"ca" json:"ca"`
	// AggregatorCA is the front-proxy CA (control plane only).
	AggregatorCA *CertAndKey `yaml:"aggregatorCA,omitempty" json:"aggregatorCA,omitempty"`
	// KubeletServingCA signs the kubelets' serving certificates (control
	// plane only): the apiserver trusts kubelets through it alone, and no
	// client trusts it for the apiserver.
	KubeletServingCA *CertAndKey `yaml:"kubeletServingCA,omitempty" json:"kubeletServingCA,omitempty"`
	// ServiceAccount is the key that signs service-account tokens (control plane only).
	ServiceAccount *Key `yaml:"serviceAccount,omitempty" json:"serviceAccount,omitempty"`

	// CertificateLifetime is the validity of every certificate Ballast
	// issues for the Kubernetes components (default 8760h, at least 3m);
	// each is renewed when a third of it is left.
	CertificateLifetime Duration `yaml:"certificateLifetime,omitempty" json:"certificateLifetime,omitempty"`

	// AllowSchedulingOnControlPlanes leaves control-plane nodes without the
	// node-role.kubernetes.io/control-plane:NoSchedule taint.
	AllowSchedulingOnControlPlanes bool `yaml:"allowSchedulingOnControlPlanes,omitempty" json:"allowSchedulingOnControlPlanes,omitempty"`

	Etcd              Etcd      `yaml:"etcd,omitempty" json:"etcd,omitempty"`
	APIServer         Component `yaml:"apiServer,omitempty" json:"apiServer,omitempty"`
	ControllerManager Component `yaml:"controllerManager,omitempty" json:"controllerManager,omitempty"`
	Scheduler         Component `yaml:"scheduler,omitempty" json:"scheduler,omitempty"`
}

// ControlPlane describes how to reach the Kubernetes API.
type ControlPlane struct {
	// Endpoint is the URL of the highly available API endpoint (https://VIP:6443).
	Endpoint string `yaml:"endpoint" json:"endpoint"`
}

// ClusterNet holds the Kubernetes network ranges.
type ClusterNet struct {
	DNSDomain      string   `yaml:"dnsDomain,omitempty" json:"dnsDomain,omitempty"`
	PodSubnets     []string `yaml:"podSubnets,omitempty" json:"podSubnets,omitempty"`
	ServiceSubnets []string `yaml:"serviceSubnets,omitempty" json:"serviceSubnets,omitempty"`
}

// Etcd configures the embedded etcd member on control-plane nodes.
type Etcd struct {
	// CA is the etcd CA (control plane only).
	CA *CertAndKey `yaml:"ca,omitempty" json:"ca,omitempty"`
	// Peers is an optional static list of control-plane addresses (host, or
	// host:port with the etcd client port, 2379 by default) used to find the
	// cluster when joining; workers also ask them for their certificate.
	Peers             []string   `yaml:"peers,omitempty" json:"peers,omitempty"`
	HeartbeatInterval Duration   `yaml:"heartbeatInterval,omitempty" json:"heartbeatInterval,omitempty"`
	ElectionTimeout   Duration   `yaml:"electionTimeout,omitempty" json:"electionTimeout,omitempty"`
	QuotaBackendBytes int64      `yaml:"quotaBackendBytes,omitempty" json:"quotaBackendBytes,omitempty"`
	SnapshotCount     uint64     `yaml:"snapshotCount,omitempty" json:"snapshotCount,omitempty"`
	Snapshots         *Snapshots `yaml:"snapshots,omitempty" json:"snapshots,omitempty"`
}

// Snapshots schedules etcd snapshots kept on the node.
type Snapshots struct {
	Interval Duration `yaml:"interval" json:"interval"`
	Keep     int      `yaml:"keep" json:"keep"`
}

// Component configures one control-plane component.
type Component struct {
	Image     string            `yaml:"image,omitempty" json:"image,omitempty"`
	ExtraArgs map[string]string `yaml:"extraArgs,omitempty" json:"extraArgs,omitempty"`
	CertSANs  []string          `yaml:"certSANs,omitempty" json:"certSANs,omitempty"`
}

// CertAndKey is a PEM certificate and (optionally) its PEM private key, both
// base64-encoded so that they fit on one YAML line.
type CertAndKey struct {
	Crt string `yaml:"crt" json:"crt"`
	Key string `yaml:"key,omitempty" json:"key,omitempty"`
}

// Key is a base64-encoded PEM private key.
type Key struct {
	Key string `yaml:"key" json:"key"`
}

// Duration is a time.Duration written as a Go duration string ("100ms", "1h").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. 100ms, 5s, 1h)", string(b))
	}
	*d = Duration(v)
	return nil
}

// IsZero lets omitempty drop unset durations.
func (d Duration) IsZero() bool { return d == 0 }

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// IsControlPlane reports whether the config is for a control-plane node.
func (c *Config) IsControlPlane() bool { return c.Machine.Type == TypeControlPlane }

// KubeletVersion is the kubelet release the node runs:
// machine.kubelet.version, else cluster.kubernetesVersion.
func (c *Config) KubeletVersion() string {
	if c.Machine.Kubelet.Version != "" {
		return c.Machine.Kubelet.Version
	}
	return c.Cluster.KubernetesVersion
}

// ControlPlaneAddrs lists where other control-plane nodes may be reached: the
// control-plane endpoint's host, then the static etcd peers as written (host
// or host:port), without repeats.
func (c *Config) ControlPlaneAddrs() []string {
	var out []string
	if u, err := url.Parse(c.Cluster.ControlPlane.Endpoint); err == nil && u.Hostname() != "" {
		out = append(out, u.Hostname())
	}
	for _, p := range c.Cluster.Etcd.Peers {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}
