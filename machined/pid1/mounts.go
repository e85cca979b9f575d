package pid1

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ballast-os/ballast/machined/install"

	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/pkg/atomicfile"
)

type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

// pseudo are the filesystems every Ballast machine has. cgroup2 only:
// Kubernetes 1.35+ refuses cgroup v1.
var pseudo = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "ptmxmode=0666,mode=0620,gid=5"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "nsdelegate"},
	{"bpf", "/sys/fs/bpf", "bpf", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "mode=0700"},
}

func (m mount) mount() error {
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return fmt.Errorf("mount %s: %w", m.target, err)
	}
	if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount %s (%s): %w", m.target, m.fstype, err)
	}
	return nil
}

func mountPseudo() error {
	for _, m := range pseudo {
		if err := m.mount(); err != nil {
			return err
		}
	}
	// Sharing mount events is what container runtimes expect of "/".
	if err := unix.Mount("", "/", "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make / shared: %w", err)
	}
	return nil
}

// Partition names (GPT) of the node's writable areas on a disk image.
const (
	PartState     = "STATE"
	PartEphemeral = "EPHEMERAL"
)

// diskWait is how long init waits for a disk's partitions to show up.
const diskWait = 3 * time.Second

// mountSystem mounts STATE and EPHEMERAL from the disk's partitions of those
// names (ext4), else a tmpfs: a machine without a disk runs from RAM and
// forgets its config at reboot.
func mountSystem(log *logger) error {
	if err := (mount{"tmpfs", Root, "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"}).mount(); err != nil {
		return err
	}
	parts := findPartitions(diskWait, PartState, PartEphemeral)
	for _, p := range []struct{ name, dir string }{{PartState, "state"}, {PartEphemeral, "var"}} {
		target := filepath.Join(Root, p.dir)
		dev, ok := parts[p.name]
		if !ok {
			log.Printf("%s: no partition named %s, kept in RAM (%s)", p.name, p.name, target)
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			continue
		}
		if p.name == PartEphemeral {
			growEphemeral(log, dev)
		}
		if err := (mount{dev, target, "ext4", unix.MS_NOSUID | unix.MS_NODEV, ""}).mount(); err != nil {
			log.Printf("%s: %v; kept in RAM", p.name, err)
			continue
		}
		log.Printf("%s: %s mounted on %s", p.name, dev, target)
		if p.name == PartEphemeral {
			growFilesystem(log, dev)
		}
	}
	return ensureMachineID(log, filepath.Join(Root, "state", "machine-id"))
}

// ensureMachineID gives the machine its ID (/etc/machine-id links to it):
// 128 random bits in hex, made once and kept on STATE.
func ensureMachineID(log *logger, path string) error {
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) == 32 {
		return nil
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("machine ID: %w", err)
	}
	if err := atomicfile.Write(path, []byte(hex.EncodeToString(id)+"\n"), 0o444); err != nil {
		return fmt.Errorf("machine ID: %w", err)
	}
	log.Printf("machine ID %x created", id)
	return nil
}

// findPartitions returns /dev paths of the partitions with the given GPT
// names, waiting up to wait for all of them (disks are probed as their
// drivers load).
func findPartitions(wait time.Duration, names ...string) map[string]string {
	deadline := time.Now().Add(wait)
	for {
		found := map[string]string{}
		entries, _ := os.ReadDir("/sys/class/block")
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join("/sys/class/block", e.Name(), "uevent"))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(data), "\n") {
				if name, ok := strings.CutPrefix(line, "PARTNAME="); ok && slices.Contains(names, name) {
					found[name] = "/dev/" + e.Name()
				}
			}
		}
		if len(found) == len(names) || time.Now().After(deadline) || !hasDisk() {
			return found
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hasDisk reports whether any block device other than a RAM, loop or CD-ROM
// device exists (no disk: no reason to wait for partitions).
func hasDisk() bool {
	entries, _ := os.ReadDir("/sys/class/block")
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, "ram") && !strings.HasPrefix(n, "loop") && !strings.HasPrefix(n, "sr") {
			return true
		}
	}
	return false
}

// unmountAll unmounts everything but the pseudo filesystems, deepest first;
// what cannot be unmounted (busy) is remounted read-only.
func unmountAll(log *logger) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		log.Printf("unmount: %v", err)
		return
	}
	var targets []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		targets = append(targets, strings.ReplaceAll(fields[1], `\040`, " "))
	}
	f.Close()
	keep := map[string]bool{"/": true}
	for _, m := range pseudo {
		keep[m.target] = true
	}
	for i := len(targets) - 1; i >= 0; i-- {
		t := targets[i]
		if keep[t] {
			continue
		}
		if err := unix.Unmount(t, 0); err != nil {
			if rerr := unix.Mount("", t, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); rerr != nil {
				log.Printf("unmount %s: %v (read-only remount: %v)", t, err, rerr)
				continue
			}
			log.Printf("unmount %s: %v; remounted read-only", t, err)
			continue
		}
		if strings.HasPrefix(t, Root) {
			log.Printf("unmounted %s", t)
		}
	}
}

// growEphemeral extends the EPHEMERAL partition dev to the end of its disk
// when the disk is larger than the table says (a cloud disk on a larger
// volume; an install writes it full size).
func growEphemeral(log *logger, dev string) {
	link, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", filepath.Base(dev)))
	if err != nil {
		return
	}
	disk := "/dev/" + filepath.Base(filepath.Dir(link))
	grown, size, err := install.GrowLast(disk)
	if err != nil {
		log.Printf("EPHEMERAL: not grown: %v", err)
		return
	}
	if grown {
		log.Printf("EPHEMERAL: partition %s grown to %d MiB (the end of %s)", dev, size>>20, disk)
	}
}

// growFilesystem grows the mounted EPHEMERAL filesystem to its partition
// (online: resize2fs through the kernel). It runs at every boot, so a
// power cut between growing the partition and the filesystem is made good
// at the next one; a filesystem that fills its partition is left alone.
func growFilesystem(log *logger, dev string) {
	out, err := exec.Command(install.Resize2fs, dev).CombinedOutput()
	switch {
	case err != nil:
		log.Printf("EPHEMERAL: resize2fs %s: %v: %s", dev, err, strings.TrimSpace(string(out)))
	case !strings.Contains(string(out), "Nothing to do"):
		log.Printf("EPHEMERAL: filesystem grown to fill %s", dev)
	}
}
