package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SystemNamespace is the containerd namespace of the containers machined
// runs for itself (the control-plane components).
const SystemNamespace = "system"

// cleanupTimeout bounds the removal of a container after its task ended.
const cleanupTimeout = 30 * time.Second

// ErrNoImage is returned when a container's image is not in containerd.
var ErrNoImage = errors.New("image not present")

// ContainerOptions configures a Container runner.
type ContainerOptions struct {
	// Client returns the containerd client (the daemon may restart between
	// runs; the client reconnects).
	Client func() (*containerd.Client, error)
	// Namespace is the containerd namespace (default SystemNamespace).
	Namespace string
	// ID names the container; it is unique per node and namespace. A
	// container of that ID left over from an earlier run is removed first.
	ID string
	// Image is the image reference; it must already be in the namespace.
	Image string
	// Args are the arguments after the image's entrypoint.
	Args []string
	// Env is added to the image's environment.
	Env []string
	// Mounts are bind mounts and others, on top of the default ones.
	Mounts []specs.Mount
	// Hostname is the container's hostname (the node's name).
	Hostname string
	// CgroupsPath is the container's cgroup (e.g. /ballast/<node>/<id>),
	// so containers of different nodes on one machine never share one.
	CgroupsPath string
	// FIFODir holds the output FIFOs (default: containerd's).
	FIFODir string
	// RuncRoot is runc's state directory for the container. runc's default
	// (/run/containerd/runc/<namespace>) is machine-wide: two nodes' daemons
	// would see each other's containers of the same ID.
	RuncRoot string
	// StopSignal is sent to stop the container (default SIGTERM).
	StopSignal syscall.Signal
	// GracePeriod is how long to wait after StopSignal before SIGKILL
	// (default 10s).
	GracePeriod time.Duration
	// OnStart, if set, is called with the task's pid once it started.
	OnStart func(pid int)
}

// Container returns a Runner that runs a container through containerd, in
// the host's (the node's) network namespace, with a read-only root
// filesystem. Its output goes to the out writer given to Run. Run removes the
// container when the task ends; stopping (ctx cancelled) sends StopSignal,
// then SIGKILL after GracePeriod, and returns nil. An unsuccessful exit
// returns an *ExitError, as for a Process.
func Container(opts ContainerOptions) Runner {
	if opts.Namespace == "" {
		opts.Namespace = SystemNamespace
	}
	if opts.StopSignal == 0 {
		opts.StopSignal = syscall.SIGTERM
	}
	if opts.GracePeriod <= 0 {
		opts.GracePeriod = DefaultGracePeriod
	}
	return &containerRunner{opts: opts}
}

type containerRunner struct{ opts ContainerOptions }

func (c *containerRunner) String() string {
	return "container(" + c.opts.ID + ", " + c.opts.Image + ")"
}

func (c *containerRunner) Run(ctx context.Context, out io.Writer, started func()) error {
	if ctx.Err() != nil {
		return nil
	}
	if out == nil {
		out = io.Discard
	}
	cl, err := c.opts.Client()
	if err != nil {
		return fmt.Errorf("%s: containerd: %w", c, err)
	}
	nsCtx := namespaces.WithNamespace(ctx, c.opts.Namespace)
	// Work that must finish even when ctx is cancelled (stop, cleanup).
	bg := context.WithoutCancel(nsCtx)

	if err := c.removeStale(bg, cl); err != nil {
		return err
	}
	image, err := cl.GetImage(nsCtx, c.opts.Image)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%s: %w: %s (import its archive or configure a registry)", c, ErrNoImage, c.opts.Image)
	}
	if err != nil {
		return fmt.Errorf("%s: image: %w", c, err)
	}
	specOpts := []oci.SpecOpts{
		oci.WithImageConfigArgs(image, c.opts.Args),
		oci.WithEnv(c.opts.Env),
		oci.WithHostNamespace(specs.NetworkNamespace),
		oci.WithHostHostsFile,
		oci.WithHostResolvconf,
		oci.WithRootFSReadonly(),
		oci.WithMounts(c.opts.Mounts),
	}
	if c.opts.Hostname != "" {
		specOpts = append(specOpts, oci.WithHostname(c.opts.Hostname))
	}
	if c.opts.CgroupsPath != "" {
		specOpts = append(specOpts, oci.WithCgroup(c.opts.CgroupsPath))
	}
	ctr, err := cl.NewContainer(nsCtx, c.opts.ID,
		containerd.WithRuntime(defaults.DefaultRuntime, &runcoptions.Options{Root: c.opts.RuncRoot}),
		containerd.WithImage(image),
		containerd.WithNewSnapshot(c.opts.ID, image),
		containerd.WithNewSpec(specOpts...),
	)
	if err != nil {
		return fmt.Errorf("%s: create container: %w", c, err)
	}
	defer c.remove(bg, ctr)

	ioOpts := []cio.Opt{cio.WithStreams(nil, out, out)}
	if c.opts.FIFODir != "" {
		if err := os.MkdirAll(c.opts.FIFODir, 0o700); err != nil {
			return fmt.Errorf("%s: fifo dir: %w", c, err)
		}
		ioOpts = append(ioOpts, cio.WithFIFODir(c.opts.FIFODir))
	}
	task, err := ctr.NewTask(bg, cio.NewCreator(ioOpts...))
	if err != nil {
		return fmt.Errorf("%s: create task: %w", c, err)
	}
	exited, err := task.Wait(bg)
	if err != nil {
		return fmt.Errorf("%s: wait task: %w", c, err)
	}
	if err := task.Start(bg); err != nil {
		_, _ = task.Delete(bg, containerd.WithProcessKill)
		return fmt.Errorf("%s: start: %w", c, err)
	}
	if c.opts.OnStart != nil {
		c.opts.OnStart(int(task.Pid()))
	}
	if started != nil {
		started()
	}

	var status containerd.ExitStatus
	stopped := false
	select {
	case status = <-exited:
	case <-ctx.Done():
		stopped = true
		status = c.stop(bg, task, exited)
	}
	// The output is complete once the task's IO is closed.
	if _, err := task.Delete(bg); err != nil && !errdefs.IsNotFound(err) {
		fmt.Fprintf(out, "delete task: %v\n", err)
	}
	if stopped {
		return nil
	}
	if err := status.Error(); err != nil {
		return fmt.Errorf("%s: wait: %w", c, err)
	}
	if code := status.ExitCode(); code != 0 {
		e := &ExitError{Code: int(code)}
		if code > 128 && code < 128+65 {
			e.Code, e.Signal = -1, syscall.Signal(code-128)
		}
		return fmt.Errorf("%s: %w", c, e)
	}
	return nil
}

// stop sends StopSignal to the task, then SIGKILL to all its processes after
// the grace period, and returns its exit status.
func (c *containerRunner) stop(ctx context.Context, task containerd.Task, exited <-chan containerd.ExitStatus) containerd.ExitStatus {
	_ = task.Kill(ctx, c.opts.StopSignal)
	grace := time.NewTimer(c.opts.GracePeriod)
	defer grace.Stop()
	select {
	case st := <-exited:
		return st
	case <-grace.C:
	}
	_ = task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll)
	return <-exited
}

// remove deletes the container and its snapshot.
func (c *containerRunner) remove(ctx context.Context, ctr containerd.Container) {
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	_ = ctr.Delete(ctx, containerd.WithSnapshotCleanup)
}

// removeStale removes a container of the same ID left by an earlier run
// (machined restarted while it ran): kills its task, deletes it and its
// snapshot.
func (c *containerRunner) removeStale(ctx context.Context, cl *containerd.Client) error {
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	ctr, err := cl.LoadContainer(ctx, c.opts.ID)
	if err == nil {
		if task, terr := ctr.Task(ctx, nil); terr == nil {
			if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("%s: remove stale task: %w", c, err)
			}
		}
		if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("%s: remove stale container: %w", c, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("%s: look up container: %w", c, err)
	}
	// A snapshot can outlive its container after a crash mid-delete.
	if err := cl.SnapshotService(defaults.DefaultSnapshotter).Remove(ctx, c.opts.ID); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("%s: remove stale snapshot: %w", c, err)
	}
	return nil
}
