package nodetools

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestProcessesOfTheRootsTree(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	ps, err := Tools{Root: os.Getpid()}.Processes()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int32]bool{}
	for _, p := range ps {
		seen[p.GetPid()] = true
	}
	if !seen[int32(os.Getpid())] || !seen[int32(child.Process.Pid)] {
		t.Fatalf("the tree of %d lacks itself or its child %d: %v", os.Getpid(), child.Process.Pid, seen)
	}
	if os.Getpid() != 1 && seen[1] {
		t.Fatal("the tree of the test process holds PID 1: Root does not limit the list")
	}
	for _, p := range ps {
		if p.GetPid() == int32(child.Process.Pid) && (p.GetCommand() != "sleep" || strings.Join(p.GetArgs(), " ") != "sleep 30" || p.GetPpid() != int32(os.Getpid())) {
			t.Fatalf("the child: %+v", p)
		}
	}
	all, err := Tools{}.Processes()
	if err != nil || len(all) <= len(ps) {
		t.Fatalf("every process: %d (%v), the tree: %d", len(all), err, len(ps))
	}
}

func TestMemoryAndMounts(t *testing.T) {
	m, err := Tools{}.Memory()
	if err != nil || m.GetTotalBytes() == 0 || m.GetAvailableBytes() > m.GetTotalBytes() {
		t.Fatalf("memory %+v %v", m, err)
	}
	ss, err := Tools{}.SystemStatus()
	if err != nil || ss.GetCpus() < 1 || ss.GetCpuTotalSeconds() <= ss.GetCpuBusySeconds() || ss.GetMemory().GetTotalBytes() == 0 {
		t.Fatalf("system status %+v %v", ss, err)
	}
	ms, err := Tools{}.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, mt := range ms {
		if mt.GetTarget() == "/" {
			if mt.GetSizeBytes() == 0 || mt.GetFstype() == "" {
				t.Fatalf("root mount %+v", mt)
			}
			return
		}
	}
	t.Fatalf("no / among %d mounts", len(ms))
}

func TestNetstatFindsTheListenerAndItsProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ss, err := Tools{Root: os.Getpid()}.Netstat(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if s.GetProtocol() == "tcp" && s.GetLocal() == ln.Addr().String() {
			if s.GetState() != "LISTEN" || s.GetPid() != int32(os.Getpid()) {
				t.Fatalf("the listener: %+v, want LISTEN held by %d", s, os.Getpid())
			}
			return
		}
	}
	t.Fatalf("no socket %s among %d listening ones", ln.Addr(), len(ss))
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]int{"a": 1000, "logs/b": 3000} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	u, err := Tools{Dirs: []Dir{{Name: "STATE", Path: dir}}}.Usage()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, d := range u.GetDirectories() {
		got[d.GetName()] = d.GetBytes()
	}
	if got["STATE"] != 4000 || got["STATE/logs"] != 3000 || len(u.GetFilesystems()) != 1 || u.GetFilesystems()[0].GetSizeBytes() == 0 {
		t.Fatalf("usage %v, filesystems %v", got, u.GetFilesystems())
	}
}

// TestReadAndListStayInTheAllowList: what an operator can read, and what
// not — files outside the list, reached directly, by .., through /proc's
// links into the root filesystem or a process's files, or by a symlink
// planted in an allowed directory; process memory and environments.
func TestReadAndListStayInTheAllowList(t *testing.T) {
	logs := t.TempDir()
	if err := os.WriteFile(filepath.Join(logs, "machined.log"), []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(logs, "escape")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/etc/hostname") // a file this process holds open
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tools := Tools{Allowed: []string{"/proc", "/sys", logs}}
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/proc/loadavg", true},
		{"/proc/self/status", true},
		{"/sys/class/net/lo/mtu", true}, // a symlink inside /sys
		{filepath.Join(logs, "machined.log"), true},
		{"/etc/hostname", false},
		{"/proc/../etc/hostname", false},
		{"/proc/self/root/etc/hostname", false},
		{"/proc/self/fd/" + itoa(int(f.Fd())), false},
		{"/proc/self/cwd/nodetools_test.go", false}, // this test's own source, outside the list
		{filepath.Join(logs, "escape"), false},
		{"/proc/self/environ", false},
		{"/proc/self/mem", false},
		{"/proc/self/pagemap", false},
		{"proc/loadavg", false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			f, err := tools.Open(tc.path)
			if f != nil {
				f.Close()
			}
			if tc.ok && err != nil {
				t.Fatalf("read %s: %v", tc.path, err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("read %s was allowed", tc.path)
			}
			if !tc.ok && !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("read %s: %v, want ErrNotAllowed", tc.path, err)
			}
		})
	}
	if fs, err := tools.List("/proc/self"); err != nil || len(fs) == 0 {
		t.Fatalf("list /proc/self: %d %v", len(fs), err)
	}
	if _, err := tools.List("/etc"); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("list /etc: %v, want ErrNotAllowed", err)
	}
	if _, err := tools.Open("/proc/self"); err == nil {
		t.Fatal("read of a directory succeeded")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
