package app

import (
	"os"
	"runtime/debug"
)

// gcPercent is the agent's garbage-collection target unless GOGC is set:
// the heap may grow to 1.5 times what is live between collections (Go's
// default is twice). machined allocates ~1 MB/s when idle and half of what
// it keeps live is the embedded etcd's fixed per-peer buffers, so a
// collection every few seconds costs well under 1% of a core and keeps
// ~15 MiB of garbage out of the node's memory. docs/benchmarks.md has the
// figures.
const gcPercent = 50

// tuneGC applies gcPercent; GOGC in the environment wins.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}
