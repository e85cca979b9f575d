package k8s

import (
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ballast-os/ballast/pkg/config"
)

func kubeletCfg(t *testing.T, typ string, mutate func(*config.Config)) *config.Config {
	t.Helper()
	cfg := &config.Config{}
	cfg.Machine.Type = typ
	cfg.Cluster.Name = "demo"
	cfg.Cluster.Token = "abcdef.0123456789abcdef"
	cfg.Cluster.Network.DNSDomain = "cluster.local"
	cfg.Cluster.Network.ServiceSubnets = []string{"10.96.0.0/12"}
	cfg.Cluster.Network.PodSubnets = []string{"10.244.0.0/16"}
	cfg.Cluster.KubernetesVersion = "v1.36.3"
	if mutate != nil {
		mutate(cfg)
	}
	return cfg
}

func TestKubeletArgs(t *testing.T) {
	p := NewKubeletPaths("/state/eph")
	n := KubeletNode{Name: "cp1", IP: "10.5.0.2", LocalEndpoint: "https://127.0.0.1:7445", CRISocket: "/run/c.sock", CgroupRoot: "/ballast/cp1"}
	for _, tc := range []struct {
		name    string
		typ     string
		mutate  func(*config.Config)
		want    []string
		notWant []string
	}{
		{name: "control plane is tainted", typ: config.TypeControlPlane,
			want: []string{"--register-with-taints=node-role.kubernetes.io/control-plane:NoSchedule", "--hostname-override=cp1", "--node-ip=10.5.0.2", "--root-dir=/state/eph/lib/kubelet"}},
		{name: "scheduling allowed on control planes", typ: config.TypeControlPlane,
			mutate:  func(c *config.Config) { c.Cluster.AllowSchedulingOnControlPlanes = true },
			notWant: []string{"--register-with-taints"}},
		{name: "worker labels and taints", typ: config.TypeWorker,
			mutate: func(c *config.Config) {
				c.Machine.Kubelet.NodeLabels = map[string]string{"topology.kubernetes.io/zone": "zone-b", "example.com/rack": "r1"}
				c.Machine.Kubelet.NodeTaints = map[string]string{"example.com/dedicated": "infra:NoSchedule", "example.com/gpu": ":NoExecute"}
			},
			want: []string{"--node-labels=example.com/rack=r1,topology.kubernetes.io/zone=zone-b",
				"--register-with-taints=example.com/dedicated=infra:NoSchedule,example.com/gpu:NoExecute"}},
		{name: "extraArgs win, except the flags Ballast owns", typ: config.TypeWorker,
			mutate: func(c *config.Config) {
				c.Machine.Kubelet.ExtraArgs = map[string]string{"v": "4", "node-ip": "10.9.9.9", "root-dir": "/elsewhere"}
			},
			want:    []string{"--v=4", "--node-ip=10.9.9.9", "--root-dir=/state/eph/lib/kubelet"},
			notWant: []string{"--root-dir=/elsewhere", "--register-with-taints"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := KubeletArgs(kubeletCfg(t, tc.typ, tc.mutate), n, p)
			for _, w := range tc.want {
				if !slices.Contains(args, w) {
					t.Errorf("missing %s in %v", w, args)
				}
			}
			for _, nw := range tc.notWant {
				if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, nw) }) {
					t.Errorf("unexpected %s in %v", nw, args)
				}
			}
		})
	}
}

func TestKubeletConfig(t *testing.T) {
	p := NewKubeletPaths("/state/eph")
	for _, v1 := range []bool{false, true} {
		n := KubeletNode{Name: "w1", CRISocket: "/run/c.sock", CgroupRoot: "/ballast/w1", CgroupV1: v1}
		data, err := KubeletConfig(kubeletCfg(t, config.TypeWorker, nil), n, p)
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := yaml.Unmarshal(data, &c); err != nil {
			t.Fatal(err)
		}
		if c["kind"] != "KubeletConfiguration" || c["cgroupRoot"] != "/ballast/w1" || c["containerRuntimeEndpoint"] != "unix:///run/c.sock" {
			t.Errorf("config = %v", c)
		}
		if dns := c["clusterDNS"].([]any); len(dns) != 1 || dns[0] != "10.96.0.10" {
			t.Errorf("clusterDNS = %v, want the tenth service address", dns)
		}
		if c["serverTLSBootstrap"] != true || c["rotateCertificates"] != true || c["readOnlyPort"] != 0 {
			t.Errorf("TLS bootstrap settings: %v", c)
		}
		if _, set := c["failCgroupV1"]; set != v1 {
			t.Errorf("failCgroupV1 set = %v on a cgroup v1 host = %v", set, v1)
		}
	}
}

func TestRenderManifests(t *testing.T) {
	cfg := kubeletCfg(t, config.TypeControlPlane, nil)
	m, err := RenderManifests(cfg, "https://127.0.0.1:7445")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range m.Objects {
		kinds[o.GetKind()]++
		if o.GetKind() == "Secret" {
			t.Errorf("the manifests carry a Secret (%s): no bootstrap token may be published", o.GetName())
		}
		for _, obs := range ObsoleteObjects {
			if o.GetKind() == obs.Kind && o.GetName() == obs.Name {
				t.Errorf("obsolete %s %s is still applied", obs.Kind, obs.Name)
			}
		}
		if o.GetKind() == "Service" && o.GetName() == "kube-dns" {
			if ip, _, _ := unstructuredString(o.Object, "spec", "clusterIP"); ip != "10.96.0.10" {
				t.Errorf("kube-dns clusterIP %q", ip)
			}
		}
	}
	for kind, want := range map[string]int{"Secret": 0, "DaemonSet": 1, "Deployment": 1, "Service": 1, "ConfigMap": 2} {
		if kinds[kind] != want {
			t.Errorf("%d %s objects, want %d (all: %v)", kinds[kind], kind, want, kinds)
		}
	}
	// The version follows the content, and the (deprecated) token is not
	// part of it.
	cfg.Cluster.Token = "zzzzzz.0123456789abcdef"
	m2, err := RenderManifests(cfg, "https://127.0.0.1:7445")
	if err != nil {
		t.Fatal(err)
	}
	if m2.Version != m.Version {
		t.Fatal("cluster.token changed the manifests")
	}
	cfg.Cluster.Network.DNSDomain = "lab.example"
	m3, err := RenderManifests(cfg, "https://127.0.0.1:7445")
	if err != nil {
		t.Fatal(err)
	}
	if m3.Version == m.Version {
		t.Fatal("a new DNS domain left the manifests' version unchanged")
	}
}

func unstructuredString(obj map[string]any, path ...string) (string, bool, error) {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[p]
	}
	s, ok := cur.(string)
	return s, ok, nil
}
