package containerd

import (
	"slices"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// TestConfig decodes the rendered config (as containerd does) and checks the
// values, including paths that need quoting.
func TestConfig(t *testing.T) {
	cri := &CRI{SandboxImage: "ballast.local/pause:3.10", CNIBinDirs: []string{"/usr/lib/cni"}, CNIConfDir: "/n1/etc/cni/net.d"}
	type doc struct {
		Version         int            `toml:"version"`
		Root            string         `toml:"root"`
		DisabledPlugins []string       `toml:"disabled_plugins"`
		Plugins         map[string]any `toml:"plugins"`
	}
	get := func(m map[string]any, path ...string) any {
		var cur any = m
		for _, p := range path {
			mm, ok := cur.(map[string]any)
			if !ok {
				return nil
			}
			cur = mm[p]
		}
		return cur
	}
	for _, tc := range []struct {
		name, root string
		cri        *CRI
		check      func(t *testing.T, d doc)
	}{
		{name: "no kubelet: CRI and NRI off", root: "/n1/lib/containerd", check: func(t *testing.T, d doc) {
			for _, p := range append([]string{nriPlugin}, criPlugins...) {
				if !slices.Contains(d.DisabledPlugins, p) {
					t.Errorf("%s not disabled: %v", p, d.DisabledPlugins)
				}
			}
			if d.Plugins["io.containerd.cri.v1.runtime"] != nil {
				t.Error("CRI runtime configured without a kubelet")
			}
		}},
		{name: "CRI for the kubelet", root: "/n1/lib/containerd", cri: cri, check: func(t *testing.T, d doc) {
			if !slices.Equal(d.DisabledPlugins, []string{nriPlugin}) {
				t.Errorf("disabled %v", d.DisabledPlugins)
			}
			for path, want := range map[string]any{
				"io.containerd.cri.v1.images/pinned_images/sandbox":                           "ballast.local/pause:3.10",
				"io.containerd.cri.v1.runtime/restrict_oom_score_adj":                         true,
				"io.containerd.cri.v1.runtime/cni/conf_dir":                                   "/n1/etc/cni/net.d",
				"io.containerd.cri.v1.runtime/containerd/runtimes/runc/options/Root":          "/n1/run/containerd/runc",
				"io.containerd.cri.v1.runtime/containerd/runtimes/runc/options/SystemdCgroup": false,
				"io.containerd.cri.v1.runtime/containerd/runtimes/runc/runtime_type":          "io.containerd.runc.v2",
			} {
				if got := get(d.Plugins, splitPath(path)...); got != want {
					t.Errorf("%s = %v, want %v", path, got, want)
				}
			}
		}},
		{name: "a path that needs quoting survives", root: "/n1/it's \"odd\"\\dir\n", check: func(t *testing.T, d doc) {
			if d.Root != "/n1/it's \"odd\"\\dir\n" {
				t.Errorf("root %q", d.Root)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Config(tc.root, "/n1/run/containerd", "/n1/run/containerd/containerd.sock", tc.cri)
			if err != nil {
				t.Fatal(err)
			}
			var d doc
			if err := toml.Unmarshal([]byte(c), &d); err != nil {
				t.Fatalf("the config does not decode: %v\n%s", err, c)
			}
			if d.Version != 3 || d.Root != tc.root {
				t.Fatalf("version %d root %q", d.Version, d.Root)
			}
			tc.check(t, d)
		})
	}
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return append(out, p[start:])
}
