package node

import (
	"os"
	"path/filepath"

	"github.com/ballast-os/ballast/machined/nodetools"
)

// Tools implements server.Machine: the node tools over this node's /proc,
// its log directory and its STATE and EPHEMERAL. A container-mode node
// shares the host's /proc: its processes are the agent's own tree.
func (n *Node) Tools() nodetools.Tools {
	t := nodetools.Tools{
		Allowed: []string{"/proc", "/sys", resolved(n.store.LogDir())},
		Dirs:    []nodetools.Dir{{Name: "STATE", Path: n.store.StateDir()}, {Name: "EPHEMERAL", Path: n.store.EphemeralDir()}},
	}
	if n.opts.Mode == ModeContainer {
		t.Root = os.Getpid()
	}
	return t
}

// resolved is dir with its symlinks resolved (the allow-list compares
// resolved paths), or dir when it cannot be.
func resolved(dir string) string {
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		return r
	}
	return dir
}
