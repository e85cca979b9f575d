package cluster

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// kubeletTunables are the machine-wide kernel settings every kubelet sets
// at start (unless protect-kernel-defaults makes it refuse instead), with
// the value it writes. On a local cluster they are the host's.
var kubeletTunables = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// readTunables reads the host's current values of the kubelet's tunables.
func readTunables() map[string]string {
	out := map[string]string{}
	for k := range kubeletTunables {
		if v, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			out[k] = strings.TrimSpace(string(v))
		}
	}
	return out
}

// restoreTunables writes back the values saved at create where the kubelet
// changed them (a value someone else changed since is left alone).
func restoreTunables(saved map[string]string) {
	for k, v := range saved {
		if _, err := strconv.Atoi(v); err != nil {
			continue
		}
		p := filepath.Join("/proc/sys", k)
		cur, err := os.ReadFile(p)
		if err != nil || strings.TrimSpace(string(cur)) != kubeletTunables[k] || v == kubeletTunables[k] {
			continue
		}
		_ = os.WriteFile(p, []byte(v+"\n"), 0o644)
	}
}
