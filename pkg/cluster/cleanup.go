package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// unmountUnder lazily unmounts every mount point under dir, deepest first
// (container root filesystems a killed containerd left behind).
func unmountUnder(dir string) error {
	dir = filepath.Clean(dir)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount decodes the octal escapes of /proc/self/mountinfo paths.
func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// removeCgroups removes the cgroups machined's containers used for a node
// (/ballast/<node>/… under every hierarchy), deepest first; a cgroup still
// holding a process stays.
func removeCgroups(node string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/ballast/" + node)
	if st, err := os.Stat("/sys/fs/cgroup/ballast/" + node); err == nil && st.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/ballast/"+node)
	}
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			_ = unix.Rmdir(d)
		}
	}
}

// KillCgroupProcesses kills every process in a node's cgroups
// (/ballast/<node>/… under every hierarchy): its pods' containers, which
// live in network namespaces of their own and so escape a kill by the
// node's namespace. It waits (up to 5 s) until they are gone and reports
// how many it signalled.
func KillCgroupProcesses(node string) int {
	total := 0
	for range 50 {
		n := killCgroupOnce(node)
		if n == 0 {
			break
		}
		total += n
		time.Sleep(100 * time.Millisecond)
	}
	return total
}

func killCgroupOnce(node string) int {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/ballast/" + node)
	if st, err := os.Stat("/sys/fs/cgroup/ballast/" + node); err == nil && st.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/ballast/"+node)
	}
	killed := map[int]bool{}
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(data)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && !killed[pid] {
					_ = unix.Kill(pid, unix.SIGKILL)
					killed[pid] = true
				}
			}
			return nil
		})
	}
	return len(killed)
}
