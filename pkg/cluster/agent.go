package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// AgentPID returns the agent a container-mode node's launcher (the node's
// recorded PID, see machined/launcher) runs now: its only child. Between
// two boots it has none.
func AgentPID(launcher int) (int, error) {
	// A child belongs to the thread that forked it: look at every thread.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", launcher))
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("the launcher (pid %d) runs no agent now", launcher)
}
