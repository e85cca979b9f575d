package pid1

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/machined/kmod"
)

// bootModules are loaded before the agent starts whatever the hardware:
// ext4 for STATE and EPHEMERAL.
var bootModules = []string{"ext4"}

// laterModules are loaded while the agent starts: the filesystems of ISO and
// nocloud volumes, and what containerd and the pod network use. Netfilter
// modules load on demand through /sbin/modprobe (see Modprobe).
var laterModules = []string{"vfat", "nls_cp437", "nls_ascii", "isofs", "squashfs", "overlay", "bridge", "br_netfilter", "veth"}

// modulesDir is /lib/modules/<running kernel>.
func modulesDir() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	return filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
}

// loadModules loads the modules of every device (again while loading one
// makes new devices appear, as a PCI virtio driver does for its virtio
// devices) and bootModules, each device's driver in parallel (probing is
// most of the time, and drivers probe independently; a module two chains
// share is loaded once, the kernel making the second loader wait). It
// returns the index for the later modules.
func loadModules(log *logger) *kmod.Index {
	ix, err := kmod.Open(modulesDir())
	if err != nil {
		log.Printf("kernel modules: %v; only built-in drivers are available", err)
		return nil
	}
	total := 0
	seen := map[string]bool{}
	want := slices.Clone(bootModules)
	for pass := 0; pass < 4; pass++ {
		aliases, _ := kmod.DeviceAliases("/sys/devices")
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
		var wg sync.WaitGroup
		var loaded atomic.Int64
		for _, m := range want {
			wg.Add(1)
			go func() {
				defer wg.Done()
				loaded.Add(int64(load(log, ix, []string{m})))
			}()
		}
		wg.Wait()
		total += int(loaded.Load())
		if loaded.Load() == 0 {
			break
		}
		want = nil
	}
	log.Printf("kernel modules: %d loaded for the devices", total)
	return ix
}

// loadLater loads laterModules (in the background, while the agent starts).
func loadLater(log *logger, ix *kmod.Index) {
	if ix == nil {
		return
	}
	log.Printf("kernel modules: %d more loaded", load(log, ix, laterModules))
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
