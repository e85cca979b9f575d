package containerd

import (
	"fmt"
	"path/filepath"

	"github.com/pelletier/go-toml/v2"
)

// CRI configures containerd's CRI plugin, which the kubelet talks to.
type CRI struct {
	// SandboxImage is the pod sandbox (pause) image, pinned so that image
	// garbage collection never removes it.
	SandboxImage string
	// CNIBinDirs hold the CNI plugins (Debian's /usr/lib/cni).
	CNIBinDirs []string
	// CNIConfDir is the node's CNI config directory (machined writes it
	// once the node has a pod CIDR).
	CNIConfDir string
}

// criPlugins are the plugins of the CRI, disabled when a node runs no kubelet.
var criPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.cri.v1.images",
	"io.containerd.cri.v1.runtime",
	"io.containerd.podsandbox.controller.v1.podsandbox",
}

// nriPlugin's socket is machine-wide, so two nodes on one machine would
// fight over it; nothing on a Ballast node uses NRI.
const nriPlugin = "io.containerd.nri.v1.nri"

// Config renders the daemon's config (containerd config version 3): every
// path under root and state, no debug or metrics listener, runc (with the
// node's own state directory) as the runtime, and the CRI when cri is set.
// It is encoded with a TOML encoder, so any path is quoted correctly.
func Config(root, state, socket string, cri *CRI) (string, error) {
	disabled := []string{nriPlugin}
	if cri == nil {
		disabled = append(disabled, criPlugins...)
	}
	plugins := map[string]any{
		"io.containerd.internal.v1.opt": map[string]any{"path": filepath.Join(root, "opt")},
	}
	if cri != nil {
		// The CRI: runc with the node's runc root (runc's default is
		// machine-wide), cgroupfs, the pinned sandbox image, the node's CNI
		// config, pod network namespaces under the node's state, and no
		// negative oom_score_adj (a sandbox without CAP_SYS_RESOURCE refuses
		// it; see docs/kubernetes.md).
		plugins["io.containerd.cri.v1.images"] = map[string]any{
			"snapshotter":   "overlayfs",
			"pinned_images": map[string]any{"sandbox": cri.SandboxImage},
		}
		plugins["io.containerd.cri.v1.runtime"] = map[string]any{
			"restrict_oom_score_adj":       true,
			"netns_mounts_under_state_dir": true,
			"cni":                          map[string]any{"bin_dirs": cri.CNIBinDirs, "conf_dir": cri.CNIConfDir, "max_conf_num": 1},
			"containerd": map[string]any{
				"default_runtime_name": "runc",
				"runtimes": map[string]any{"runc": map[string]any{
					"runtime_type": "io.containerd.runc.v2",
					"options":      map[string]any{"Root": runcRoot(state), "SystemdCgroup": false},
				}},
			},
		}
		plugins["io.containerd.grpc.v1.cri"] = map[string]any{"stream_server_address": "127.0.0.1", "stream_server_port": "0"}
	}
	doc := map[string]any{
		"version":          3,
		"root":             root,
		"state":            state,
		"disabled_plugins": disabled,
		"grpc":             map[string]any{"address": socket},
		"ttrpc":            map[string]any{"address": socket + ".ttrpc"},
		"debug":            map[string]any{"address": "", "level": "info"},
		"metrics":          map[string]any{"address": ""},
		"plugins":          plugins,
	}
	out, err := toml.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("render containerd config: %w", err)
	}
	return "# Written by machined; changes are overwritten at every start.\n" + string(out), nil
}

// runcRoot is runc's state directory for the node's containers, under the
// daemon's state (runc's default, /run/containerd/runc, is machine-wide).
func runcRoot(state string) string { return filepath.Join(state, "runc") }
