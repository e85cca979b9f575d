// Package nodetools answers the machine API's node tools: processes,
// memory, mounts, sockets with their process, disk usage, and reading and
// listing an allow-list of paths. It reads /proc through prometheus/procfs.
// In container mode a node shares the host's /proc: Tools.Root keeps the
// process list to the agent's own tree, and the sockets are those of the
// agent's network namespace (/proc/self/net).
package nodetools

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ballast-os/ballast/api/machine"
)

// Dir is a directory whose disk usage Usage reports.
type Dir struct {
	Name, Path string
}

// Tools are the node tools of one node.
type Tools struct {
	// Proc is procfs's mount point ("" is /proc).
	Proc string
	// Root is the PID whose process tree Processes and Netstat show (0:
	// every process).
	Root int
	// Allowed are the directories Read and List may reach (after symlinks
	// are resolved).
	Allowed []string
	// Dirs are the directories Usage reports (STATE, EPHEMERAL).
	Dirs []Dir
}

func (t Tools) fs() (procfs.FS, error) {
	p := t.Proc
	if p == "" {
		p = procfs.DefaultMountPoint
	}
	return procfs.NewFS(p)
}

// procs returns the processes shown: every one, or Root's tree.
func (t Tools) procs() (procfs.FS, []procfs.Proc, map[int]procfs.ProcStat, error) {
	fs, err := t.fs()
	if err != nil {
		return fs, nil, nil, err
	}
	all, err := fs.AllProcs()
	if err != nil {
		return fs, nil, nil, fmt.Errorf("list processes: %w", err)
	}
	stats := map[int]procfs.ProcStat{}
	var alive []procfs.Proc
	for _, p := range all {
		st, err := p.Stat()
		if err != nil {
			continue // exited meanwhile
		}
		stats[p.PID] = st
		alive = append(alive, p)
	}
	if t.Root == 0 {
		return fs, alive, stats, nil
	}
	children := map[int][]int{}
	for pid, st := range stats {
		children[st.PPID] = append(children[st.PPID], pid)
	}
	in := map[int]bool{}
	for queue := []int{t.Root}; len(queue) > 0; queue = queue[1:] {
		pid := queue[0]
		if in[pid] {
			continue
		}
		in[pid] = true
		queue = append(queue, children[pid]...)
	}
	var tree []procfs.Proc
	for _, p := range alive {
		if in[p.PID] {
			tree = append(tree, p)
		}
	}
	return fs, tree, stats, nil
}

// Processes lists the processes, by PID.
func (t Tools) Processes() ([]*machine.Process, error) {
	_, procs, stats, err := t.procs()
	if err != nil {
		return nil, err
	}
	var out []*machine.Process
	for _, p := range procs {
		st := stats[p.PID]
		args, _ := p.CmdLine()
		mp := &machine.Process{Pid: int32(p.PID), Ppid: int32(st.PPID), State: st.State, Command: st.Comm, Args: args,
			Threads: int32(st.NumThreads), CpuSeconds: st.CPUTime(), ResidentBytes: uint64(max(0, st.ResidentMemory())),
			VirtualBytes: uint64(st.VirtualMemory())}
		if start, err := st.StartTime(); err == nil {
			mp.Started = timestamppb.New(time.Unix(0, int64(start*1e9)))
		}
		out = append(out, mp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pid < out[j].Pid })
	return out, nil
}

// Memory reads /proc/meminfo.
func (t Tools) Memory() (*machine.MemoryResponse, error) {
	fs, err := t.fs()
	if err != nil {
		return nil, err
	}
	m, err := fs.Meminfo()
	if err != nil {
		return nil, fmt.Errorf("read meminfo: %w", err)
	}
	v := func(p *uint64) uint64 {
		if p == nil {
			return 0
		}
		return *p
	}
	return &machine.MemoryResponse{TotalBytes: v(m.MemTotalBytes), FreeBytes: v(m.MemFreeBytes), AvailableBytes: v(m.MemAvailableBytes),
		BuffersBytes: v(m.BuffersBytes), CachedBytes: v(m.CachedBytes), SwapTotalBytes: v(m.SwapTotalBytes),
		SwapFreeBytes: v(m.SwapFreeBytes), ShmemBytes: v(m.ShmemBytes)}, nil
}

// Mounts lists the agent's mounts with their filesystems' sizes.
func (t Tools) Mounts() ([]*machine.Mount, error) {
	fs, err := t.fs()
	if err != nil {
		return nil, err
	}
	self, err := fs.Self()
	if err != nil {
		return nil, err
	}
	infos, err := self.MountInfo()
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var out []*machine.Mount
	for _, mi := range infos {
		m := &machine.Mount{Source: mi.Source, Target: mi.MountPoint, Fstype: mi.FSType, Options: joinOptions(mi.Options)}
		m.SizeBytes, m.UsedBytes, m.AvailableBytes = statfs(mi.MountPoint)
		out = append(out, m)
	}
	return out, nil
}

func joinOptions(o map[string]string) string {
	var parts []string
	for k, v := range o {
		if v != "" {
			k += "=" + v
		}
		parts = append(parts, k)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// statfs returns a filesystem's size, used and available bytes (zeros when
// it cannot be asked, e.g. a mount point the agent may not reach).
func statfs(path string) (size, used, avail uint64) {
	var s unix.Statfs_t
	if err := unix.Statfs(path, &s); err != nil {
		return 0, 0, 0
	}
	bs := uint64(s.Bsize)
	return s.Blocks * bs, (s.Blocks - s.Bfree) * bs, s.Bavail * bs
}

// ErrNotAllowed is returned for a path outside the allow-list.
var ErrNotAllowed = errors.New("path not allowed")

// denied are paths inside the allow-list that are never read: process
// memory and environments (secrets may live there) and the kernel's memory.
var denied = []string{"/proc/kcore", "/proc/kmem", "/proc/mem"}

// resolve returns path with its symlinks resolved when it lies inside an
// allowed directory and is not denied.
func (t Tools) resolve(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%w: %q is not an absolute path", ErrNotAllowed, path)
	}
	real, err := filepath.EvalSymlinks(filepath.Clean(path))
	if err != nil {
		return "", err
	}
	base := filepath.Base(real)
	if slices.Contains(denied, real) || base == "environ" || base == "mem" || base == "pagemap" {
		return "", fmt.Errorf("%w: %s is never read (memory or environment)", ErrNotAllowed, real)
	}
	for _, a := range t.Allowed {
		if real == a || strings.HasPrefix(real, a+"/") {
			return real, nil
		}
	}
	return "", fmt.Errorf("%w: %s is outside %s", ErrNotAllowed, real, strings.Join(t.Allowed, ", "))
}

// MaxRead bounds what Read returns of one file.
const MaxRead = 16 << 20

// Open opens an allowed file for reading (at most MaxRead bytes).
func (t Tools) Open(path string) (*os.File, error) {
	real, err := t.resolve(path)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(real)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory: use list", path)
	}
	return os.Open(real)
}

// List lists an allowed directory.
func (t Tools) List(path string) ([]*machine.FileInfo, error) {
	real, err := t.resolve(path)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(real)
	if err != nil {
		return nil, err
	}
	var out []*machine.FileInfo
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue // gone meanwhile
		}
		out = append(out, &machine.FileInfo{Name: e.Name(), Size: uint64(max(0, info.Size())), Mode: info.Mode().String(),
			Modified: timestamppb.New(info.ModTime()), Directory: e.IsDir()})
	}
	return out, nil
}

// Usage reports the filesystems of the Dirs and the bytes under each Dir
// and its first-level directories.
func (t Tools) Usage() (*machine.UsageResponse, error) {
	resp := &machine.UsageResponse{}
	for _, d := range t.Dirs {
		m := &machine.Mount{Target: d.Path, Source: d.Name}
		m.SizeBytes, m.UsedBytes, m.AvailableBytes = statfs(d.Path)
		resp.Filesystems = append(resp.Filesystems, m)
		bytes, files := du(d.Path)
		resp.Directories = append(resp.Directories, &machine.DirectoryUsage{Name: d.Name, Path: d.Path, Bytes: bytes, Files: files})
		entries, _ := os.ReadDir(d.Path)
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			p := filepath.Join(d.Path, e.Name())
			bytes, files := du(p)
			resp.Directories = append(resp.Directories, &machine.DirectoryUsage{Name: d.Name + "/" + e.Name(), Path: p, Bytes: bytes, Files: files})
		}
	}
	return resp, nil
}

// du sums the sizes of the regular files under dir (not following
// symlinks, not crossing into other filesystems' mounts below it).
func du(dir string) (bytes, files uint64) {
	var root unix.Stat_t
	if err := unix.Lstat(dir, &root); err != nil {
		return 0, 0
	}
	_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if e.IsDir() && p != dir {
			var st unix.Stat_t
			if unix.Lstat(p, &st) == nil && st.Dev != root.Dev {
				return filepath.SkipDir
			}
		}
		if e.Type().IsRegular() {
			if info, err := e.Info(); err == nil {
				bytes += uint64(max(0, info.Size()))
				files++
			}
		}
		return nil
	})
	return bytes, files
}

// SystemStatus reads the load, the CPU time and the memory.
func (t Tools) SystemStatus() (*machine.SystemStatusResponse, error) {
	fs, err := t.fs()
	if err != nil {
		return nil, err
	}
	load, err := fs.LoadAvg()
	if err != nil {
		return nil, fmt.Errorf("read loadavg: %w", err)
	}
	st, err := fs.Stat()
	if err != nil {
		return nil, fmt.Errorf("read stat: %w", err)
	}
	mem, err := t.Memory()
	if err != nil {
		return nil, err
	}
	c := st.CPUTotal
	idle := c.Idle + c.Iowait
	total := c.User + c.Nice + c.System + c.Idle + c.Iowait + c.IRQ + c.SoftIRQ + c.Steal
	return &machine.SystemStatusResponse{Load1: load.Load1, Load5: load.Load5, Load15: load.Load15, Cpus: int32(len(st.CPU)),
		CpuBusySeconds: total - idle, CpuTotalSeconds: total, Memory: mem, Time: timestamppb.Now()}, nil
}
