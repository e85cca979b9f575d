package pid1

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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

// TestMoveOrRestore: a move that fails part-way (here: the third file, as a
// full tmpfs would) moves every file back, so the source is whole and the
// machine can go on from it; a move that succeeds leaves nothing behind.
func TestMoveOrRestore(t *testing.T) {
	for _, failAt := range []int{0, 3} {
		src := t.TempDir()
		dst := filepath.Join(src, "newroot")
		files := map[string]string{"init": "machined", "etc/passwd": "root:x:0:0", "usr/bin/runc": "runc", "usr/lib/x.so": "lib", "lib/modules/m.ko": "ko"}
		for name, data := range files {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("/init", filepath.Join(src, "etc", "modprobe")); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		calls := 0
		moveFileFn = func(from, to string) (int64, error) {
			calls++
			if calls == failAt {
				return 0, unix.ENOSPC
			}
			return moveFile(from, to)
		}
		t.Cleanup(func() { moveFileFn = moveFile })
		_, err := moveOrRestore(src, dst)
		if failAt == 0 {
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "every file moved back") {
			t.Fatalf("err = %v, want the ENOSPC and a restore", err)
		}
		for name, data := range files {
			if got, err := os.ReadFile(filepath.Join(src, name)); err != nil || string(got) != data {
				t.Errorf("%s after the restore: %q %v", name, got, err)
			}
		}
		if target, err := os.Readlink(filepath.Join(src, "etc", "modprobe")); err != nil || target != "/init" {
			t.Errorf("symlink after the restore: %q %v", target, err)
		}
	}
}

func TestCheckRoom(t *testing.T) {
	for _, tc := range []struct {
		need, avail int64
		ok          bool
	}{
		{600 << 20, 1500 << 20, true},
		{600 << 20, 600 << 20, false}, // no reserve left
		{2 << 30, 1 << 30, false},
	} {
		err := checkRoom(tc.need, tc.avail)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrNoRoom)) {
			t.Errorf("checkRoom(%d MB, %d MB) = %v, want ok=%v", tc.need>>20, tc.avail>>20, err, tc.ok)
		}
	}
}

type fakeAgent struct{ signals, kills int }

func (f *fakeAgent) Signal(os.Signal) error { f.signals++; return nil }
func (f *fakeAgent) Kill() error            { f.kills++; return nil }

// TestShutdownDeadline: a stop asked of PID 1 signals the agent; an agent
// that does not exit by the deadline is killed, and the machine then ends
// as asked (power off) once the kill is reaped.
func TestShutdownDeadline(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wedged   bool
		wantKill int
	}{
		{"agent stops in time", false, 0},
		{"wedged agent is killed", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sigs := make(chan os.Signal, 4)
			timer := make(chan time.Time, 1)
			a := &fakeAgent{}
			exited := false
			reap := func() (unix.WaitStatus, bool) { return waitStatus(0x9), exited } // killed by SIGKILL
			var asked time.Duration
			after := func(d time.Duration) <-chan time.Time { asked = d; return timer }
			done := make(chan int, 1)
			go func() { done <- waitAgent(newLogger(discard{}), sigs, a, reap, after) }()
			sigs <- unix.SIGTERM
			if tc.wedged {
				timer <- time.Now() // the deadline passes; the agent is killed
			}
			// Let waitAgent act on what it was sent before the agent exits.
			time.Sleep(50 * time.Millisecond)
			exited = true
			sigs <- unix.SIGCHLD
			select {
			case got := <-done:
				if got != unix.LINUX_REBOOT_CMD_POWER_OFF {
					t.Fatalf("ends with %#x, want power off", got)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("waitAgent did not return")
			}
			if a.signals != 1 || a.kills != tc.wantKill || asked != shutdownDeadline {
				t.Fatalf("signals %d, kills %d (want %d), deadline %s", a.signals, a.kills, tc.wantKill, asked)
			}
		})
	}
}
