package app

import (
	"os"
	"runtime/debug"
)

// gcPercent is the agent's garbage-collection target unless GOGC is set:
// the heap may grow to 1.25 times what is live between collections (Go's
// default is twice). Half of what a control plane's machined keeps live is
// the embedded etcd's fixed per-peer buffers and it allocates ~1 MB/s when
// idle, so collecting more often costs no CPU that can be measured (1-2% of
// a core at GOGC 100, 50 and 25 alike) and keeps garbage out of the node's
// memory: an idle control plane's machined is ~87 MiB resident at GOGC=100,
// ~80 at 50 and ~71 at 25 (docs/benchmarks.md).
const gcPercent = 25

// tuneGC applies gcPercent; GOGC in the environment wins.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}
