package pid1

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/machined/kmod"
)

// baseModules are loaded on every machine whatever its hardware: the
// filesystems of the disk image, the ISO and nocloud volumes, and what
// containerd and the pod network use. Netfilter modules load on demand
// through /sbin/modprobe (see Modprobe).
var baseModules = []string{"ext4", "vfat", "nls_cp437", "nls_ascii", "isofs", "squashfs", "overlay", "bridge", "br_netfilter", "veth"}

// modulesDir is /lib/modules/<running kernel>.
func modulesDir() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	return filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
}

// loadModules loads the modules of every device (again while loading one
// makes new devices appear, as a PCI virtio driver does for its virtio
// devices), then the base modules.
func loadModules(log *logger) {
	ix, err := kmod.Open(modulesDir())
	if err != nil {
		log.Printf("kernel modules: %v; only built-in drivers are available", err)
		return
	}
	total := 0
	seen := map[string]bool{}
	for pass := 0; pass < 4; pass++ {
		aliases, _ := kmod.DeviceAliases("/sys/devices")
		var want []string
		for _, a := range aliases {
			for _, m := range ix.Match(a) {
				if !seen[m] {
					seen[m] = true
					want = append(want, m)
				}
			}
		}
		if len(want) == 0 {
			break
		}
		n := load(log, ix, want)
		total += n
		if n == 0 {
			break
		}
	}
	total += load(log, ix, baseModules)
	log.Printf("kernel modules: %d loaded", total)
}

func load(log *logger, ix *kmod.Index, names []string) int {
	files, err := ix.Order(names)
	if err != nil {
		log.Printf("kernel modules: %v", err)
	}
	n, err := ix.Load(files)
	if err != nil {
		log.Printf("kernel modules: %v", err)
	}
	return n
}

// Modprobe is /sbin/modprobe of the image (a link to /init): the kernel runs
// it to load a module on demand (netfilter's nft_* for kube-proxy, for
// example). It takes modprobe's usual "-q -- NAME" and resolves NAME as a
// module name or an alias.
func Modprobe(args []string) int {
	var names []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			names = append(names, a)
		}
	}
	ix, err := kmod.Open(modulesDir())
	if err != nil {
		return 1
	}
	status := 0
	for _, name := range names {
		mods := []string{name}
		if m := ix.Match(name); len(m) > 0 {
			mods = m
		}
		files, err := ix.Order(mods)
		if err == nil {
			_, err = ix.Load(files)
		}
		if err != nil {
			os.Stderr.WriteString("modprobe: " + err.Error() + "\n")
			status = 1
		}
	}
	return status
}
