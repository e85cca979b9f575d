// Package qemuvm runs the OS artifacts in qemu for the boot tests and the
// boot benchmark: TCG (KVM is not usable on the build machines), 2 vCPUs,
// a virtio RNG (as clouds offer; the kernel's random pool is otherwise
// seeded seconds late under TCG, and the API's key waits for it), a virtio
// NIC on slirp user networking with the machine API (50000) and
// metrics (50001) forwarded to free ports of 127.0.0.1, the serial console
// captured.
package qemuvm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// VM is one qemu process.
type VM struct {
	// APIPort and MetricsPort are the host ports forwarded to the guest's
	// 50000 and 50001.
	APIPort, MetricsPort int
	// Started is when qemu was started.
	Started time.Time

	cmd     *exec.Cmd
	console *Buffer
	done    chan struct{}
	exitErr error
}

// Buffer is an output buffer safe for a process writing and a test reading.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FreePort returns a TCP port of 127.0.0.1 nobody listens on.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start boots qemu with args after the common ones; netdev adds options
// to the user network (tftp=, bootfile=).
func Start(netdev string, args ...string) (*VM, error) {
	api, metrics, err := twoPorts()
	if err != nil {
		return nil, err
	}
	return start(netdev, api, metrics, &Buffer{}, args)
}

// twoPorts picks the host ports of the machine API and the metrics.
func twoPorts() (api, metrics int, err error) {
	if api, err = FreePort(); err != nil {
		return 0, 0, err
	}
	metrics, err = FreePort()
	return api, metrics, err
}

// start boots qemu forwarding api and metrics, its console into console.
func start(netdev string, api, metrics int, console *Buffer, args []string) (*VM, error) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, fmt.Errorf("qemu is not installed (hack/install-deps.sh qemu): %w", err)
	}
	v := &VM{console: console, done: make(chan struct{}), APIPort: api, MetricsPort: metrics}
	nd := fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:50000,hostfwd=tcp:127.0.0.1:%d-:50001", v.APIPort, v.MetricsPort)
	if netdev != "" {
		nd += "," + netdev
	}
	full := append([]string{"-accel", "tcg", "-m", "3072", "-smp", "2", "-display", "none", "-serial", "stdio", "-monitor", "none",
		"-netdev", nd, "-device", "virtio-net-pci,netdev=n0", "-device", "virtio-rng-pci"}, args...)
	v.cmd = exec.Command(qemu, full...)
	var out io.Writer = v.console
	// BALLAST_CONSOLE_DIR: the console is also written there as it comes.
	if dir := os.Getenv("BALLAST_CONSOLE_DIR"); dir != "" {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("vm-%d.log", v.APIPort)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		out = io.MultiWriter(v.console, f)
		defer func() {
			if v.cmd.Process == nil {
				f.Close()
			}
		}()
		go func() { <-v.done; f.Close() }()
	}
	v.cmd.Stdout, v.cmd.Stderr = out, out
	v.Started = time.Now()
	if err := v.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	go func() { v.exitErr = v.cmd.Wait(); close(v.done) }()
	return v, nil
}

// Node is the machine API's forwarded address for nodectl.
func (v *VM) Node() string { return "127.0.0.1:" + strconv.Itoa(v.APIPort) }

// Console is everything the serial console printed so far.
func (v *VM) Console() string { return v.console.String() }

// WaitConsole waits for the (skip+1)th console match of re and returns its
// submatches.
func (v *VM) WaitConsole(re *regexp.Regexp, skip int, timeout time.Duration) ([]string, error) {
	return waitConsole(v.console, re, skip, timeout, v.done, func() error {
		return fmt.Errorf("qemu exited (%v)", v.exitErr)
	})
}

// waitConsole polls console for the (skip+1)th match of re until timeout,
// or until done closes (ended says how).
func waitConsole(console *Buffer, re *regexp.Regexp, skip int, timeout time.Duration, done <-chan struct{}, ended func() error) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindAllStringSubmatch(console.String(), -1); len(m) > skip {
			return m[skip], nil
		}
		select {
		case <-done:
			return nil, fmt.Errorf("%w before the console showed %q", ended(), re)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("timed out after %s waiting for the console to show %q", timeout, re)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Wait waits for qemu to exit by itself (the guest powered off, or rebooted
// under -no-reboot).
func (v *VM) Wait(timeout time.Duration) error {
	select {
	case <-v.done:
		return v.exitErr
	case <-time.After(timeout):
		return errors.New("the VM did not end within " + timeout.String())
	}
}

// Kill stops qemu (by its PID) if it still runs.
func (v *VM) Kill() {
	select {
	case <-v.done:
	default:
		_ = v.cmd.Process.Kill()
		<-v.done
	}
}

var stampRE = regexp.MustCompile(`^\[\s*(\d+\.\d+)\]`)

// KernelTime is the kernel timestamp ("[   12.345678] …", seconds since
// boot) of the first console line containing what.
func KernelTime(console, what string) (time.Duration, bool) {
	for _, line := range strings.Split(console, "\n") {
		if !strings.Contains(line, what) {
			continue
		}
		if m := stampRE.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			f, _ := strconv.ParseFloat(m[1], 64)
			return time.Duration(f * float64(time.Second)), true
		}
	}
	return 0, false
}

// Machine is a VM that reboots the way a machine does while its tests
// restart qemu: started with -no-reboot, each reboot (or power cut) ends
// qemu and a new one starts on the same forwarded ports, so a client keeps
// its address; the console runs on across boots. (qemu's own warm reset
// left guests here hanging a minute into the next boot.)
type Machine struct {
	netdev       string
	args         []string
	api, metrics int
	console      *Buffer
	mu           sync.Mutex
	cur          *VM
	boots        int
	stopped      bool
	done         chan struct{}
	lastStartErr error
}

// StartMachine boots args (plus -no-reboot) and keeps rebooting it until
// Stop.
func StartMachine(netdev string, args ...string) (*Machine, error) {
	api, metrics, err := twoPorts()
	if err != nil {
		return nil, err
	}
	m := &Machine{netdev: netdev, args: append(append([]string(nil), args...), "-no-reboot"), api: api, metrics: metrics, console: &Buffer{}, done: make(chan struct{})}
	if err := m.boot(); err != nil {
		return nil, err
	}
	go m.run()
	return m, nil
}

func (m *Machine) boot() error {
	v, err := start(m.netdev, m.api, m.metrics, m.console, m.args)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.cur, m.boots = v, m.boots+1
	m.mu.Unlock()
	return nil
}

func (m *Machine) run() {
	defer close(m.done)
	for {
		m.mu.Lock()
		v := m.cur
		m.mu.Unlock()
		<-v.done
		m.mu.Lock()
		stopped := m.stopped
		m.mu.Unlock()
		if stopped {
			return
		}
		fmt.Fprintf(m.console, "\n[qemuvm: qemu ended (%v); starting it again]\n", v.exitErr)
		if err := m.boot(); err != nil {
			m.mu.Lock()
			m.lastStartErr = err
			m.mu.Unlock()
			return
		}
	}
}

// Node is the machine API's forwarded address.
func (m *Machine) Node() string { return "127.0.0.1:" + strconv.Itoa(m.api) }

// Console is everything every boot printed so far.
func (m *Machine) Console() string { return m.console.String() }

// Boots is how many times qemu was started.
func (m *Machine) Boots() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.boots
}

// WaitConsole waits for the (skip+1)th console match of re, across boots.
func (m *Machine) WaitConsole(re *regexp.Regexp, skip int, timeout time.Duration) ([]string, error) {
	return waitConsole(m.console, re, skip, timeout, m.done, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		return fmt.Errorf("the machine stopped (%v)", m.lastStartErr)
	})
}

// PowerCut kills the running qemu (by its PID); the machine boots again.
func (m *Machine) PowerCut() {
	m.mu.Lock()
	v := m.cur
	m.mu.Unlock()
	fmt.Fprintf(m.console, "\n[qemuvm: power cut]\n")
	v.Kill()
}

// Stop ends the machine: qemu is killed and not started again.
func (m *Machine) Stop() {
	m.mu.Lock()
	m.stopped = true
	v := m.cur
	m.mu.Unlock()
	v.Kill()
	<-m.done
}
