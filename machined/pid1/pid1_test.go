package pid1

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
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

// TestMoveTree moves a small root (directories with their modes, files,
// a symlink, a FIFO, the destination inside the source) and checks the
// copy and that the sources are gone.
func TestMoveTree(t *testing.T) {
	src := t.TempDir()
	dst := filepath.Join(src, "newroot")
	for _, d := range []string{"usr/share/ballast/images", "etc", "newroot"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(src, "etc"), 0o750); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"init": "machined", "usr/share/ballast/images/pause.tar": strings.Repeat("x", 1<<20)}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/init", filepath.Join(src, "etc", "modprobe")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(src, "etc", "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := moveTree(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len("machined")+1<<20) {
		t.Fatalf("moved %d bytes", n)
	}
	for name, data := range files {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(got) != data {
			t.Fatalf("%s: %d bytes, %v", name, len(got), err)
		}
		if _, err := os.Stat(filepath.Join(src, name)); !os.IsNotExist(err) {
			t.Fatalf("source %s still there: %v", name, err)
		}
	}
	if st, err := os.Stat(filepath.Join(dst, "etc")); err != nil || st.Mode().Perm() != 0o750 {
		t.Fatalf("etc: %v %v, want mode 0750", st, err)
	}
	if st, err := os.Stat(filepath.Join(dst, "init")); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("init: %v %v, want mode 0755", st, err)
	}
	if target, err := os.Readlink(filepath.Join(dst, "etc", "modprobe")); err != nil || target != "/init" {
		t.Fatalf("symlink: %q %v", target, err)
	}
	if st, err := os.Lstat(filepath.Join(dst, "etc", "fifo")); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("fifo: %v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "newroot")); !os.IsNotExist(err) {
		t.Fatalf("the destination was copied into itself: %v", err)
	}
}

// TestEnsureMachineID: made once (32 hex digits), then kept.
func TestEnsureMachineID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "machine-id")
	log := newLogger(discard{})
	if err := ensureMachineID(log, path); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(path)
	if err != nil || !regexp.MustCompile(`^[0-9a-f]{32}\n$`).Match(first) {
		t.Fatalf("machine-id %q %v", first, err)
	}
	if err := ensureMachineID(log, path); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(path); string(again) != string(first) {
		t.Fatalf("machine-id changed: %q → %q", first, again)
	}
}
