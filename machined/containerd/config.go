package containerd

import (
	"fmt"
	"path/filepath"
	"strings"
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
func Config(root, state, socket string, cri *CRI) string {
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	qs := func(l []string) string {
		var out []string
		for _, s := range l {
			out = append(out, q(s))
		}
		return "[" + strings.Join(out, ", ") + "]"
	}
	var b strings.Builder
	b.WriteString("# Written by machined; changes are overwritten at every start.\n")
	b.WriteString("version = 3\n")
	fmt.Fprintf(&b, "root = %s\nstate = %s\n", q(root), q(state))
	disabled := []string{nriPlugin}
	if cri == nil {
		disabled = append(disabled, criPlugins...)
	}
	fmt.Fprintf(&b, "disabled_plugins = %s\n\n", qs(disabled))
	fmt.Fprintf(&b, "[grpc]\n  address = %s\n\n", q(socket))
	fmt.Fprintf(&b, "[ttrpc]\n  address = %s\n\n", q(socket+".ttrpc"))
	b.WriteString("[debug]\n  address = \"\"\n  level = \"info\"\n\n")
	b.WriteString("[metrics]\n  address = \"\"\n\n")
	fmt.Fprintf(&b, "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %s\n", q(filepath.Join(root, "opt")))
	if cri == nil {
		return b.String()
	}
	// The CRI: runc with the node's runc root (runc's default is
	// machine-wide), cgroupfs, the pinned sandbox image, the node's CNI
	// config, pod network namespaces under the node's state, and no
	// negative oom_score_adj (a sandbox without CAP_SYS_RESOURCE refuses it;
	// see docs/kubernetes.md).
	fmt.Fprintf(&b, "\n[plugins.\"io.containerd.cri.v1.images\"]\n  snapshotter = \"overlayfs\"\n")
	fmt.Fprintf(&b, "\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = %s\n", q(cri.SandboxImage))
	b.WriteString("\n[plugins.\"io.containerd.cri.v1.runtime\"]\n")
	b.WriteString("  restrict_oom_score_adj = true\n")
	b.WriteString("  netns_mounts_under_state_dir = true\n")
	fmt.Fprintf(&b, "\n[plugins.\"io.containerd.cri.v1.runtime\".cni]\n  bin_dirs = %s\n  conf_dir = %s\n  max_conf_num = 1\n", qs(cri.CNIBinDirs), q(cri.CNIConfDir))
	b.WriteString("\n[plugins.\"io.containerd.cri.v1.runtime\".containerd]\n  default_runtime_name = \"runc\"\n")
	b.WriteString("\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n")
	fmt.Fprintf(&b, "\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc.options]\n  Root = %s\n  SystemdCgroup = false\n", q(runcRoot(state)))
	b.WriteString("\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n")
	return b.String()
}

// runcRoot is runc's state directory for the node's containers, under the
// daemon's state (runc's default, /run/containerd/runc, is machine-wide).
func runcRoot(state string) string { return filepath.Join(state, "runc") }
