package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/pkg/nodeconfig"
)

// Destroy stops every node process, removes the namespaces, links and state
// of a cluster, and drops its context from the client file. It is idempotent
// and works from a partial state (a crashed create) or none at all.
func Destroy(ctx context.Context, root, name, nodeconfigPath string, progress io.Writer) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	nm := namesFor(name)
	st, err := Load(root, name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	var errs []error
	if st != nil {
		var wg sync.WaitGroup
		for _, n := range st.Nodes {
			if n.PID > 0 && st.Provisioner == ProvisionerQEMU {
				fmt.Fprintf(progress, "stopping VM %s (pid %d)\n", n.Name, n.PID)
				killOwned(n.PID, n.StateDir)
				continue
			}
			if n.PID > 0 && isMachined(n.PID, n.StateDir) {
				fmt.Fprintf(progress, "stopping %s (pid %d)\n", n.Name, n.PID)
				wg.Add(1)
				go func() { defer wg.Done(); stopProcess(n.PID) }()
			}
		}
		wg.Wait()
		if st.DHCPPID > 0 {
			killOwned(st.DHCPPID, st.Dir)
		}
	}
	// Namespaces by name prefix: also those a crash left unrecorded.
	list, err := netnsList(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range list {
		if strings.HasPrefix(ns, nm.prefix) {
			killNetnsProcesses(ns)
			if err := ip(ctx, "netns", "del", ns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Pods live in namespaces of their own, in the nodes' cgroups.
	if st != nil {
		for _, n := range st.Nodes {
			KillCgroupProcesses(st.Name + "-" + n.Name)
		}
	}
	// Host-side veths go with their namespaces; remove stragglers and the bridge.
	ifaces, _ := os.ReadDir("/sys/class/net")
	for _, i := range ifaces {
		if strings.HasPrefix(i.Name(), nm.veth+"-") || i.Name() == nm.bridge {
			// A veth may vanish with its namespace meanwhile.
			if err := deleteLink(i.Name()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Container root filesystems a killed containerd left mounted, and the
	// nodes' cgroups.
	errs = append(errs, unmountUnder(filepath.Join(root, name)))
	if st != nil {
		for _, n := range st.Nodes {
			removeCgroups(st.Name + "-" + n.Name)
		}
	}
	if st != nil {
		restoreTunables(st.HostTunables)
	}
	if err := os.RemoveAll(filepath.Join(root, name)); err != nil {
		errs = append(errs, err)
	}
	if nodeconfigPath != "" {
		if c, err := nodeconfig.Load(nodeconfigPath); err == nil && c.Contexts[name] != nil {
			delete(c.Contexts, name)
			if c.Context == name {
				c.Context = ""
			}
			errs = append(errs, c.Save(nodeconfigPath))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroy %s: %w", name, err)
	}
	fmt.Fprintf(progress, "cluster %s destroyed\n", name)
	return nil
}

// isMachined guards against killing a recycled PID: the process must be a
// machined running with this node's state dir.
func isMachined(pid int, stateDir string) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	return len(args) > 0 && strings.HasSuffix(args[0], "machined") && strings.Contains(string(cmdline), stateDir)
}

// stopProcess sends SIGTERM, then SIGKILL after a grace period.
func stopProcess(pid int) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	// machined stops its containers and containerd first.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// killNetnsProcesses kills what still runs in a namespace (ip netns pids).
func killNetnsProcesses(ns string) {
	out, err := execOutput("ip", "netns", "pids", ns)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// deleteLink deletes the host's link name; one already gone is fine.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	var gone netlink.LinkNotFoundError
	switch {
	case errors.As(err, &gone):
		return nil
	case err != nil:
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}
