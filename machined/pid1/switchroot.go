package pid1

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/machined/platform"
)

// switchedEnv marks the init that runs after the switch to a tmpfs root.
const switchedEnv = "BALLAST_ROOT_SWITCHED"

// newRoot is where the tmpfs root is assembled before it becomes /.
const newRoot = "/newroot"

// leaveInitramfs moves the root filesystem off the initramfs onto a tmpfs
// and runs /init again there; it returns only when nothing had to move, or
// when the move could not be made — too little room (checked first) or a
// failure part-way, after which every file is moved back: the machine stays
// on the initramfs with its API up (logged as fatal for containers, which
// cannot start) instead of booting half a root and rebooting in a loop. runc enters a container's root with
// pivot_root(2), which the kernel refuses while / is the initial rootfs (it
// has no parent mount); a tmpfs moved over it is an ordinary mount. Every
// file is copied and its source unlinked at once, so the machine holds one
// copy at a time, as switch_root does.
func leaveInitramfs(log *logger) {
	if os.Getenv(switchedEnv) != "" {
		os.Unsetenv(switchedEnv)
		return
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil || (st.Type != unix.RAMFS_MAGIC && st.Type != unix.TMPFS_MAGIC) {
		return
	}
	if !runsContainers() {
		return // the agent and etcd only: no container, no need to pay the copy
	}
	n, err := copyRoot()
	if err != nil {
		log.Printf("FATAL for containers: %v; the root filesystem stays on the initramfs, the machine API comes up but containers cannot start", err)
		return
	}
	log.Printf("root filesystem moved off the initramfs to a tmpfs (%d MB)", n>>20)
	if err := enterRoot(); err != nil {
		if _, rerr := moveTree(newRoot, "/"); rerr != nil {
			log.Printf("cannot switch to the new root (%v) nor move the files back (%v); rebooting in %s", err, rerr, failureDelay)
			time.Sleep(failureDelay)
			_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
		}
		_ = os.Chdir("/")
		_ = unix.Unmount(newRoot, unix.MNT_DETACH)
		log.Printf("FATAL for containers: cannot switch to the new root: %v; files moved back, the machine API comes up but containers cannot start", err)
	}
}

// rootReserve is room the tmpfs root must keep free beyond the files moved
// into it (what the running system writes there).
const rootReserve = 64 << 20

// ErrNoRoom is returned when the tmpfs cannot hold the initramfs's files.
var ErrNoRoom = errors.New("not enough room for the root filesystem")

// checkRoom returns ErrNoRoom, with both figures, when need bytes plus
// rootReserve do not fit in avail.
func checkRoom(need, avail int64) error {
	if need+rootReserve > avail {
		return fmt.Errorf("%w: %d MB to move and %d MB reserve, %d MB free on the tmpfs", ErrNoRoom, need>>20, rootReserve>>20, avail>>20)
	}
	return nil
}

// moveOrRestore moves the tree at src into dst (moveTree); when that fails
// part-way, it moves what was moved back, so src is whole again.
func moveOrRestore(src, dst string) (int64, error) {
	n, err := moveTree(src, dst)
	if err == nil {
		return n, nil
	}
	if _, rerr := moveTree(dst, src); rerr != nil {
		return n, fmt.Errorf("move stopped part-way (%w) and moving the files back failed (%v)", err, rerr)
	}
	return 0, fmt.Errorf("move stopped part-way, every file moved back: %w", err)
}

// treeSize is the bytes of regular files moveTree(src, dst) would move.
func treeSize(src, dst string) (int64, error) {
	var root unix.Stat_t
	if err := unix.Lstat(src, &root); err != nil {
		return 0, err
	}
	var total int64
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == dst {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		if path != src && st.Dev != root.Dev {
			return filepath.SkipDir
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			total += st.Size
		}
		return nil
	})
	return total, err
}

// runsContainers reports whether the kernel command line leaves Kubernetes
// on (ballast.kubernetes=false turns it off). The kernel does not pass
// dotted parameters to init, so /proc is mounted for the moment.
func runsContainers() bool {
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return true
	}
	defer unix.Unmount("/proc", 0)
	data, _ := os.ReadFile("/proc/cmdline")
	v, ok := platform.ParseCmdline(string(data))[platform.ArgKubernetes]
	on, err := strconv.ParseBool(v) // as the agent's --kubernetes flag reads it
	return !ok || v == "" || err != nil || on
}

// copyRoot mounts a tmpfs on newRoot and moves the initramfs's files into
// it. It returns the bytes moved.
func copyRoot() (int64, error) {
	if err := os.Mkdir(newRoot, 0o755); err != nil && !os.IsExist(err) {
		return 0, err
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", 0, "mode=0755"); err != nil {
		return 0, fmt.Errorf("mount tmpfs on %s: %w", newRoot, err)
	}
	need, err := treeSize("/", newRoot)
	if err == nil {
		var st unix.Statfs_t
		if err = unix.Statfs(newRoot, &st); err == nil {
			err = checkRoom(need, int64(st.Bavail)*st.Bsize)
		}
	}
	if err == nil {
		var n int64
		if n, err = moveOrRestore("/", newRoot); err == nil {
			return n, nil
		}
	}
	_ = unix.Unmount(newRoot, unix.MNT_DETACH)
	return 0, err
}

// moveTree moves the tree at src into the directory dst (inside src or
// not): directories, regular files (copied, then unlinked), symlinks and
// device nodes, with their modes and owners. Other filesystems mounted
// below src are left alone. It returns the bytes moved.
func moveTree(src, dst string) (int64, error) {
	var root unix.Stat_t
	if err := unix.Lstat(src, &root); err != nil {
		return 0, err
	}
	var moved int64
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == src {
			return nil
		}
		if path == dst {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		if st.Dev != root.Dev { // a mount point: leave it alone
			return filepath.SkipDir
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			// Directories stay in the source: moving back finds them.
			if err := os.Mkdir(to, 0o700); err != nil && !os.IsExist(err) {
				return err
			}
		case unix.S_IFREG:
			n, err := moveFileFn(path, to)
			if err != nil {
				return err
			}
			moved += n
		case unix.S_IFLNK:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
			return os.Remove(path)
		default: // device nodes, FIFOs (left in the source too)
			if err := unix.Mknod(to, st.Mode, int(st.Rdev)); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("mknod %s: %w", to, err)
			}
		}
		if err := os.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		return unix.Chmod(to, st.Mode&0o7777)
	})
	return moved, err
}

// moveFileFn is moveFile; tests inject failures through it.
var moveFileFn = moveFile

// moveFile copies a regular file and removes the source.
func moveFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(dst) // the source stays whole; no half copy
		return n, fmt.Errorf("copy %s: %w", src, err)
	}
	return n, os.Remove(src)
}

// enterRoot makes newRoot the root (mount --move onto /, chroot) and runs
// /init from it with the same arguments. It returns only on failure.
func enterRoot() error {
	if err := os.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s onto /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	return syscall.Exec("/init", os.Args, append(os.Environ(), switchedEnv+"=1"))
}
