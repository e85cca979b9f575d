package nodecert

import (
	"slices"
	"testing"

	"github.com/ballast-os/ballast/pkg/config"
)

// TestControlPlaneHostsAndInputs: a worker asks the endpoint's host and
// each peer once, without etcd's port; it fetches a new certificate when
// its hostname, the OS CA, the machine token or the control planes change,
// and not otherwise.
func TestControlPlaneHostsAndInputs(t *testing.T) {
	base := &config.Config{}
	base.Cluster.ControlPlane.Endpoint = "https://10.5.0.254:6443"
	base.Cluster.Etcd.Peers = []string{"10.5.0.2:2380", "10.5.0.3", "10.5.0.254"}
	base.Machine.CA = &config.CertAndKey{Crt: "ca"}
	base.Machine.Token = "t"
	if got, want := ControlPlaneHosts(base), []string{"10.5.0.254", "10.5.0.2", "10.5.0.3"}; !slices.Equal(got, want) {
		t.Fatalf("hosts %v, want %v", got, want)
	}
	host := "w1"
	f := &Fetcher{Hostname: func(*config.Config) string { return host }}
	before := f.inputs(base)
	for _, tc := range []struct {
		name   string
		change func(c *config.Config)
		fetch  bool
	}{
		{"nothing", func(*config.Config) {}, false},
		{"an unrelated setting", func(c *config.Config) { c.Machine.Kubelet.ExtraArgs = map[string]string{"v": "2"} }, false},
		{"the machine token", func(c *config.Config) { c.Machine.Token = "t2" }, true},
		{"the OS CA", func(c *config.Config) { c.Machine.CA = &config.CertAndKey{Crt: "ca2"} }, true},
		{"a new control plane", func(c *config.Config) { c.Cluster.Etcd.Peers = append(slices.Clone(c.Cluster.Etcd.Peers), "10.5.0.4") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := *base
			tc.change(&cfg)
			if got := f.inputs(&cfg) != before; got != tc.fetch {
				t.Fatalf("fetches again: %t, want %t", got, tc.fetch)
			}
		})
	}
	host = "w1-renamed"
	if f.inputs(base) == before {
		t.Fatal("a new hostname does not fetch a new certificate")
	}
}
