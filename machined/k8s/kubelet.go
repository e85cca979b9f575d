package k8s

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/pki"
)

// Kubelet ports on the node (in the node's own network namespace).
const (
	KubeletPort        = 10250
	KubeletHealthzPort = 10248
)

// ControlPlaneTaint and ControlPlaneLabel mark control-plane nodes.
const (
	ControlPlaneTaint = "node-role.kubernetes.io/control-plane"
	ControlPlaneLabel = "node-role.kubernetes.io/control-plane"
)

// KubeletPaths are the kubelet's files and directories on one node.
type KubeletPaths struct {
	// Dir holds the config, kubeconfigs, CA and resolv.conf.
	Dir string
	// RootDir is the kubelet's --root-dir (pods' volumes, plugins; its
	// certificates in RootDir/pki).
	RootDir string
	// PodLogsDir holds the containers' logs.
	PodLogsDir string
	// CNIConfDir is the CNI config directory containerd reads.
	CNIConfDir string
	// CNIDataDir is host-local IPAM's state.
	CNIDataDir string
}

// NewKubeletPaths lays the kubelet's files out under a node's ephemeral dir.
func NewKubeletPaths(ephemeral string) KubeletPaths {
	return KubeletPaths{
		Dir:        filepath.Join(ephemeral, "etc", "kubelet"),
		RootDir:    filepath.Join(ephemeral, "lib", "kubelet"),
		PodLogsDir: filepath.Join(ephemeral, "log", "pods"),
		CNIConfDir: filepath.Join(ephemeral, "etc", "cni", "net.d"),
		CNIDataDir: filepath.Join(ephemeral, "lib", "cni"),
	}
}

// Files of KubeletPaths.Dir.
func (p KubeletPaths) Config() string     { return filepath.Join(p.Dir, "config.yaml") }
func (p KubeletPaths) Kubeconfig() string { return filepath.Join(p.Dir, "kubeconfig") }

// BootstrapKubeconfig is where Ballast before 0.17 kept the kubelet's
// bootstrap token; it is removed when found.
func (p KubeletPaths) BootstrapKubeconfig() string {
	return filepath.Join(p.Dir, "bootstrap-kubeconfig")
}
func (p KubeletPaths) CA() string         { return filepath.Join(p.Dir, "ca.crt") }
func (p KubeletPaths) ResolvConf() string { return filepath.Join(p.Dir, "resolv.conf") }
func (p KubeletPaths) CertDir() string    { return filepath.Join(p.RootDir, "pki") }

// ClientCert is the kubelet's client certificate and key (one PEM file, a
// link its certificate manager keeps current).
func (p KubeletPaths) ClientCert() string {
	return filepath.Join(p.CertDir(), "kubelet-client-current.pem")
}

// KubeletNode is what the kubelet's files depend on besides the config.
type KubeletNode struct {
	// Name is the node's name.
	Name string
	// IP is the node's address (--node-ip).
	IP string
	// LocalEndpoint is the node's API load balancer.
	LocalEndpoint string
	// CRISocket is the node's containerd socket.
	CRISocket string
	// CgroupRoot is the node's cgroup, under which the kubelet puts pods.
	CgroupRoot string
	// CgroupV1 is true on a cgroup v1 host (container mode on such a host).
	CgroupV1 bool
}

// DNSServiceIP is the cluster DNS Service's ClusterIP: the tenth address of
// the first service subnet (kubeadm's choice, so 10.96.0.10 by default).
func DNSServiceIP(cfg *config.Config) (net.IP, error) { return serviceIP(cfg, 10) }

// KubeletConfig renders the kubelet's KubeletConfiguration.
func KubeletConfig(cfg *config.Config, n KubeletNode, p KubeletPaths) ([]byte, error) {
	dns, err := DNSServiceIP(cfg)
	if err != nil {
		return nil, err
	}
	c := map[string]any{
		"apiVersion":               "kubelet.config.k8s.io/v1beta1",
		"kind":                     "KubeletConfiguration",
		"cgroupDriver":             "cgroupfs",
		"cgroupRoot":               n.CgroupRoot,
		"containerRuntimeEndpoint": "unix://" + n.CRISocket,
		"podLogsDir":               p.PodLogsDir,
		"port":                     KubeletPort,
		"readOnlyPort":             0,
		"healthzBindAddress":       "127.0.0.1",
		"healthzPort":              KubeletHealthzPort,
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": p.CA()},
		},
		"authorization":      map[string]any{"mode": "Webhook"},
		"clusterDNS":         []string{dns.String()},
		"clusterDomain":      cfg.Cluster.Network.DNSDomain,
		"resolvConf":         p.ResolvConf(),
		"rotateCertificates": true,
		"serverTLSBootstrap": true,
		"failSwapOn":         false,
		"tlsMinVersion":      "VersionTLS12",
		// Nodes of a local cluster share one disk: evict only when it is
		// really full, not at the default 10-15 %.
		"evictionHard": map[string]string{
			"memory.available":  "100Mi",
			"nodefs.available":  "5%",
			"imagefs.available": "5%",
			"nodefs.inodesFree": "2%",
		},
		"imageGCHighThresholdPercent": 95,
		"imageGCLowThresholdPercent":  90,
	}
	if n.CgroupV1 {
		// Kubernetes 1.35+ refuses cgroup v1 unless told; container mode on
		// a cgroup v1 host is the one place Ballast runs on it.
		c["failCgroupV1"] = false
	}
	out, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("render kubelet config: %w", err)
	}
	return append([]byte("# Written by machined; changes are overwritten.\n"), out...), nil
}

// KubeletArgs are the kubelet's flags: Ballast's own, then
// machine.kubelet.extraArgs (validation keeps the ones Ballast owns out).
func KubeletArgs(cfg *config.Config, n KubeletNode, p KubeletPaths) []string {
	flags := map[string]string{
		"config":     p.Config(),
		"kubeconfig": p.Kubeconfig(),
		"cert-dir":   p.CertDir(),
		"root-dir":   p.RootDir,
		// FlexVolume drivers: under the root dir, not /usr/libexec (the OS
		// image's is read-only, a host's is not the node's).
		"volume-plugin-dir": filepath.Join(p.RootDir, "volumeplugins"),
		"hostname-override": n.Name,
		"node-ip":           n.IP,
	}
	if l := NodeLabels(cfg); l != "" {
		flags["node-labels"] = l
	}
	if t := NodeTaints(cfg); t != "" {
		flags["register-with-taints"] = t
	}
	for k, v := range cfg.Machine.Kubelet.ExtraArgs {
		if !slices.Contains(config.KubeletOwnedFlags, k) {
			flags[k] = v
		}
	}
	return Flags(flags)
}

// NodeLabels renders machine.kubelet.nodeLabels as --node-labels.
func NodeLabels(cfg *config.Config) string {
	var out []string
	for k, v := range cfg.Machine.Kubelet.NodeLabels {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// NodeTaints renders the taints the node registers with: the control-plane
// taint (unless cluster.allowSchedulingOnControlPlanes) and
// machine.kubelet.nodeTaints.
func NodeTaints(cfg *config.Config) string {
	var out []string
	if cfg.IsControlPlane() && !cfg.Cluster.AllowSchedulingOnControlPlanes {
		out = append(out, ControlPlaneTaint+":NoSchedule")
	}
	for k, v := range cfg.Machine.Kubelet.NodeTaints {
		value, effect, _ := strings.Cut(v, ":")
		if value == "" {
			out = append(out, k+":"+effect)
		} else {
			out = append(out, k+"="+value+":"+effect)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// ClusterCACert is the Kubernetes CA certificate (PEM), which every node
// carries.
func ClusterCACert(cfg *config.Config) ([]byte, error) {
	if cfg.Cluster.CA == nil || cfg.Cluster.CA.Crt == "" {
		return nil, fmt.Errorf("%w: cluster.ca.crt", ErrMissingSecret)
	}
	crt, err := pki.DecodeB64(cfg.Cluster.CA.Crt)
	if err != nil {
		return nil, fmt.Errorf("cluster.ca.crt: %w", err)
	}
	return crt, nil
}
