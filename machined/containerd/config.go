package containerd

import (
	"fmt"
	"path/filepath"
	"strings"
)

// disabledPlugins are containerd plugins a Ballast node does not run: the
// CRI (machined runs its system containers through the client API; the
// kubelet issue turns the CRI on) and NRI (its socket is machine-wide, so two
// nodes on one machine would fight over it).
var disabledPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.cri.v1.images",
	"io.containerd.cri.v1.runtime",
	"io.containerd.podsandbox.controller.v1.podsandbox",
	"io.containerd.nri.v1.nri",
}

// Config renders the daemon's config (containerd config version 3): every
// path under root and state, no debug or metrics listener, runc as the
// runtime.
func Config(root, state, socket string) string {
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	var b strings.Builder
	b.WriteString("# Written by machined; changes are overwritten at every start.\n")
	b.WriteString("version = 3\n")
	fmt.Fprintf(&b, "root = %s\nstate = %s\n", q(root), q(state))
	var dis []string
	for _, p := range disabledPlugins {
		dis = append(dis, q(p))
	}
	fmt.Fprintf(&b, "disabled_plugins = [%s]\n\n", strings.Join(dis, ", "))
	fmt.Fprintf(&b, "[grpc]\n  address = %s\n\n", q(socket))
	fmt.Fprintf(&b, "[ttrpc]\n  address = %s\n\n", q(socket+".ttrpc"))
	b.WriteString("[debug]\n  address = \"\"\n  level = \"info\"\n\n")
	b.WriteString("[metrics]\n  address = \"\"\n\n")
	fmt.Fprintf(&b, "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %s\n", q(filepath.Join(root, "opt")))
	return b.String()
}
