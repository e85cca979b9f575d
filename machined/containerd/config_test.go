package containerd

import (
	"strings"
	"testing"
)

func TestConfig(t *testing.T) {
	cri := &CRI{SandboxImage: "ballast.local/pause:3.10", CNIBinDirs: []string{"/usr/lib/cni"}, CNIConfDir: "/n1/etc/cni/net.d"}
	for _, tc := range []struct {
		name      string
		cri       *CRI
		want, not []string
	}{
		{name: "no kubelet: CRI and NRI off", want: []string{`"io.containerd.grpc.v1.cri"`, `"io.containerd.nri.v1.nri"`},
			not: []string{"pinned_images", "restrict_oom_score_adj"}},
		{name: "CRI for the kubelet", cri: cri,
			want: []string{`disabled_plugins = ["io.containerd.nri.v1.nri"]`, `sandbox = "ballast.local/pause:3.10"`,
				"restrict_oom_score_adj = true", `conf_dir = "/n1/etc/cni/net.d"`, `bin_dirs = ["/usr/lib/cni"]`,
				`Root = "/n1/run/containerd/runc"`, "SystemdCgroup = false"},
			not: []string{`"io.containerd.grpc.v1.cri",`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config("/n1/lib/containerd", "/n1/run/containerd", "/n1/run/containerd/containerd.sock", tc.cri)
			for _, w := range tc.want {
				if !strings.Contains(c, w) {
					t.Errorf("config lacks %s:\n%s", w, c)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(c, n) {
					t.Errorf("config has %s:\n%s", n, c)
				}
			}
		})
	}
}
