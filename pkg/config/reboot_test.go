package config

import (
	"reflect"
	"testing"
	"time"
)

func TestRebootRequired(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{name: "no change", change: func(*Config) {}},
		{name: "hostname", change: func(c *Config) { c.Machine.Network.Hostname = "cp2" }},
		{name: "interface address", change: func(c *Config) { c.Machine.Network.Interfaces[0].Addresses = []string{"10.0.0.11/24"} }},
		{name: "remove interface", change: func(c *Config) { c.Machine.Network.Interfaces = c.Machine.Network.Interfaces[:1] }},
		{name: "machine cert SANs", change: func(c *Config) { c.Machine.CertSANs = append(c.Machine.CertSANs, "x.example.com") }},
		{name: "apiServer extraArgs", change: func(c *Config) { c.Cluster.APIServer.ExtraArgs["v"] = "2" }},
		{name: "scheduler extraArgs", change: func(c *Config) { c.Cluster.Scheduler.ExtraArgs = map[string]string{"v": "2"} }},
		{name: "apiServer cert SANs", change: func(c *Config) { c.Cluster.APIServer.CertSANs = nil }},
		{name: "etcd snapshots", change: func(c *Config) { c.Cluster.Etcd.Snapshots = nil }},
		{name: "etcd peers", change: func(c *Config) { c.Cluster.Etcd.Peers = []string{"10.0.0.12"} }},
		{name: "explicit default", change: func(c *Config) { c.Cluster.Etcd.SnapshotCount = 0 }},
		{name: "kubernetes version", change: func(c *Config) { c.Cluster.KubernetesVersion = "v1.37.0" }},
		{name: "kubelet version", change: func(c *Config) { c.Machine.Kubelet.Version = "v1.37.0" }},
		{name: "apiServer image", change: func(c *Config) { c.Cluster.APIServer.Image = "registry.k8s.io/kube-apiserver:v1.36.4" }},
		{name: "log destinations", change: func(c *Config) {
			c.Machine.Logging.Destinations = []LogDestination{{Endpoint: "tcp://10.0.0.1:5140"}}
		}},
		{
			name:   "install disk",
			change: func(c *Config) { c.Machine.Install.Disk = "/dev/sdb" },
			want:   []string{"machine.install.disk"},
		},
		{
			name: "mixed live and reboot changes",
			change: func(c *Config) {
				c.Machine.Network.Hostname = "cp2"
				c.Cluster.Etcd.HeartbeatInterval = Duration(200 * time.Millisecond)
				c.Cluster.Token = "zzzzzz.zzzzzzzzzzzzzzzz"
				c.Cluster.Etcd.Peers = nil
			},
			want: []string{"cluster.etcd.heartbeatInterval", "cluster.token"},
		},
		{
			name:   "removed CA key",
			change: func(c *Config) { c.Cluster.AggregatorCA = nil },
			want:   []string{"cluster.aggregatorCA.crt", "cluster.aggregatorCA.key"},
		},
		{
			name:   "service subnet",
			change: func(c *Config) { c.Cluster.Network.ServiceSubnets = []string{"10.96.0.0/16", "fd00:10:96::/112"} },
			want:   []string{"cluster.network.serviceSubnets[0]", "cluster.network.serviceSubnets[1]"},
		},
	}
	base := mustDecode(t, controlPlaneYAML(t))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := base.DeepCopy()
			tt.change(next)
			if got := RebootRequired(base, next); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("RebootRequired = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRebootRequiredNil(t *testing.T) {
	c := mustDecode(t, workerYAML(t))
	if got := RebootRequired(nil, c); len(got) == 0 {
		t.Error("RebootRequired(nil, config) is empty")
	}
	if got := RebootRequired(nil, nil); got != nil {
		t.Errorf("RebootRequired(nil, nil) = %q", got)
	}
}

func TestControlPlaneAddrs(t *testing.T) {
	tests := []struct {
		endpoint string
		peers    []string
		want     []string
	}{
		{"https://10.5.0.2:6443", nil, []string{"10.5.0.2"}},
		{"https://10.5.0.2:6443", []string{"10.5.0.2", "10.5.0.3:2379"}, []string{"10.5.0.2", "10.5.0.3:2379"}},
		{"https://api.example:6443", []string{"10.5.0.3"}, []string{"api.example", "10.5.0.3"}},
		{"", []string{"10.5.0.3"}, []string{"10.5.0.3"}},
	}
	for _, tt := range tests {
		c := &Config{}
		c.Cluster.ControlPlane.Endpoint = tt.endpoint
		c.Cluster.Etcd.Peers = tt.peers
		if got := c.ControlPlaneAddrs(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s %v: got %v, want %v", tt.endpoint, tt.peers, got, tt.want)
		}
	}
}
