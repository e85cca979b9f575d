package controlplane

import (
	"testing"

	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/gen/gentest"
	"github.com/ballast-os/ballast/pkg/images"
)

// TestFingerprints: what must restart a component changes its fingerprint
// — its extraArgs, its image, the node's address (and with it the etcd
// server) — and nothing else does.
func TestFingerprints(t *testing.T) {
	base := gentest.New(t).ControlPlane
	node := k8s.Node{Name: "cp1", AdvertiseIP: "10.5.0.2", LocalEndpoint: "https://127.0.0.1:7445", EtcdServer: "https://10.5.0.2:2379"}
	p := k8s.Paths{Dir: "/k8s"}
	before := Fingerprints(base, node, p)
	if len(before) != 3 {
		t.Fatalf("fingerprints of %d components, want 3", len(before))
	}
	moved := node
	moved.AdvertiseIP, moved.EtcdServer = "10.5.0.9", "https://10.5.0.9:2379"
	for _, tc := range []struct {
		name    string
		change  func(*config.Config)
		node    k8s.Node
		changed []string
	}{
		{"nothing", func(*config.Config) {}, node, nil},
		{"a setting no component reads", func(c *config.Config) { c.Machine.Kubelet.ExtraArgs = map[string]string{"v": "4"} }, node, nil},
		{"scheduler extraArgs", func(c *config.Config) { c.Cluster.Scheduler.ExtraArgs = map[string]string{"v": "4"} }, node, []string{images.Scheduler}},
		{"apiserver image", func(c *config.Config) { c.Cluster.APIServer.Image = "registry.example/kube-apiserver:v1.36.9" }, node, []string{images.APIServer}},
		{"the node's address", func(*config.Config) {}, moved, []string{images.APIServer}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := *base
			tc.change(&cfg)
			after := Fingerprints(&cfg, tc.node, p)
			var changed []string
			for _, name := range images.ControlPlaneComponents {
				if after[name] != before[name] {
					changed = append(changed, name)
				}
			}
			if len(changed) != len(tc.changed) {
				t.Fatalf("changed %v, want %v", changed, tc.changed)
			}
			for i := range changed {
				if changed[i] != tc.changed[i] {
					t.Fatalf("changed %v, want %v", changed, tc.changed)
				}
			}
		})
	}
}
