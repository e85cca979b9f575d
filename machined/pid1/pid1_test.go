package pid1

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestAgentExited(t *testing.T) {
	log := newLogger(discard{})
	// WaitStatus encoding: exit code in bits 8-15, signal in 0-6.
	tests := []struct {
		name   string
		status uint32
		wanted int
		want   int
	}{
		{"reboot asked", ExitReboot << 8, -1, unix.LINUX_REBOOT_CMD_RESTART},
		{"power off asked", ExitPowerOff << 8, -1, unix.LINUX_REBOOT_CMD_POWER_OFF},
		{"signal to PID 1 wins", ExitPowerOff << 8, unix.LINUX_REBOOT_CMD_RESTART, unix.LINUX_REBOOT_CMD_RESTART},
	}
	for _, tt := range tests {
		if got := agentExited(log, waitStatus(tt.status), tt.wanted); got != tt.want {
			t.Errorf("%s: agentExited = %#x, want %#x", tt.name, got, tt.want)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func waitStatus(s uint32) unix.WaitStatus { return unix.WaitStatus(s) }
