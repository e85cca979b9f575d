// Package containerd runs the node's containerd daemon (built from the same
// module version as the Go client machined uses), writes its config, checks
// its health through the client and imports the images machined needs.
//
// Every path of the daemon (root, state, sockets, FIFOs) lives under
// directories the node owns, so several nodes on one machine never collide.
package containerd

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

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/pkg/atomicfile"
)

// maxSocketPath is the longest unix socket path the kernel accepts (108 with
// the terminating NUL) less the ".ttrpc" suffix containerd adds.
const maxSocketPath = 107 - len(".ttrpc")

// ErrNotFound is returned when the containerd binary cannot be found.
var ErrNotFound = runner.ErrBinaryNotFound

// Options configures a Daemon.
type Options struct {
	// Binary is the containerd executable; its directory must also hold
	// containerd-shim-runc-v2. Empty: looked up next to machined, then in PATH.
	Binary string
	// Root is containerd's persistent directory (images, snapshots).
	Root string
	// State is containerd's runtime directory (sockets, tasks, FIFOs).
	State string
	// CRI, when set, turns on the CRI plugin for the kubelet.
	CRI *CRI
}

// Daemon is the node's containerd.
type Daemon struct {
	opts Options

	mu     sync.Mutex
	client *containerd.Client
}

// New returns a Daemon; nothing runs until its Runner runs.
func New(opts Options) *Daemon { return &Daemon{opts: opts} }

// Socket is the daemon's gRPC socket.
func (d *Daemon) Socket() string { return filepath.Join(d.opts.State, "containerd.sock") }

// FIFODir is where container output FIFOs are created.
func (d *Daemon) FIFODir() string { return filepath.Join(d.opts.State, "fifo") }

// RuncRoot is runc's state directory for the node's containers.
func (d *Daemon) RuncRoot() string { return runcRoot(d.opts.State) }

func (d *Daemon) configPath() string { return filepath.Join(d.opts.State, "config.toml") }
func (d *Daemon) pidPath() string    { return filepath.Join(d.opts.State, "containerd.pid") }

// Runner returns the process runner of the daemon. It writes the config,
// kills a daemon an earlier machined left running on the same state (it
// would hold the database lock), and starts containerd.
func (d *Daemon) Runner() (runner.Runner, error) {
	bin, err := d.binary()
	if err != nil {
		return nil, err
	}
	if len(d.Socket()) > maxSocketPath {
		return nil, fmt.Errorf("containerd socket path %s is longer than %d bytes: use a shorter state directory", d.Socket(), maxSocketPath)
	}
	path := filepath.Dir(bin) + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	proc := runner.Process([]string{bin, "--config", d.configPath()}, runner.ProcessOptions{
		Env:         []string{"PATH=" + path},
		GracePeriod: 15 * time.Second,
		OnStart: func(pid int) {
			_ = atomicfile.Write(d.pidPath(), []byte(strconv.Itoa(pid)+"\n"), 0o644)
		},
	})
	return &daemonRunner{Runner: proc, d: d}, nil
}

type daemonRunner struct {
	runner.Runner
	d *Daemon
}

func (r *daemonRunner) Run(ctx context.Context, out io.Writer, started func()) error {
	if err := r.d.prepare(); err != nil {
		return err
	}
	return r.Runner.Run(ctx, out, started)
}

// prepare writes the config and removes a stale daemon of the same state.
func (d *Daemon) prepare() error {
	for _, dir := range []string{d.opts.Root, d.opts.State, d.FIFODir()} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("containerd dir: %w", err)
		}
	}
	cfg, err := Config(d.opts.Root, d.opts.State, d.Socket(), d.opts.CRI)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(d.configPath(), []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("containerd config: %w", err)
	}
	killStale(d.pidPath(), d.configPath())
	return nil
}

// killStale kills the process in pidFile when it is a containerd started
// with configPath, and waits (briefly) for it to be gone.
func killStale(pidFile, configPath string) {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), configPath) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *Daemon) binary() (string, error) {
	return runner.FindBinary("containerd", d.opts.Binary, "build it with 'make images' or pass --containerd-path")
}

// Client returns the client of the daemon; it is created once and
// reconnects when the daemon restarts.
func (d *Daemon) Client() (*containerd.Client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client != nil {
		return d.client, nil
	}
	c, err := containerd.New(d.Socket(), containerd.WithDefaultNamespace(runner.SystemNamespace), containerd.WithTimeout(0))
	if err != nil {
		return nil, fmt.Errorf("containerd client: %w", err)
	}
	d.client = c
	return c, nil
}

// Healthy asks the daemon whether it serves, through the client.
func (d *Daemon) Healthy(ctx context.Context) error {
	c, err := d.Client()
	if err != nil {
		return err
	}
	ok, err := c.IsServing(ctx)
	if err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	if !ok {
		return errors.New("containerd is not serving")
	}
	return nil
}

// Close closes the client.
func (d *Daemon) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return nil
	}
	err := d.client.Close()
	d.client = nil
	return err
}
