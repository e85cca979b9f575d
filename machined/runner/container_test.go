package runner_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	containerdclient "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"

	"github.com/ballast-os/ballast/machined/containerd"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/pkg/ociimage"
)

const testImage = "ballast.local/busybox:test"

// realContainerd starts a containerd (built by `make images`) on a
// temporary root with a busybox image imported, and returns its daemon.
// It needs root, runc and busybox-static; without root it fails unless
// BALLAST_SKIP_PRIVILEGED=1.
func realContainerd(t *testing.T) *containerd.Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("BALLAST_SKIP_PRIVILEGED") == "1" {
			t.Skip("privileged test skipped because BALLAST_SKIP_PRIVILEGED=1: containers need root")
		}
		t.Fatal("privileged test run without root: the container runner needs containerd and runc as root. Set BALLAST_SKIP_PRIVILEGED=1 to skip it knowingly")
	}
	binDir := os.Getenv("BALLAST_BIN_DIR")
	if binDir == "" {
		binDir, _ = filepath.Abs("../../_out/bin")
	}
	bin := filepath.Join(binDir, "containerd")
	for _, need := range []string{bin, "/bin/busybox"} {
		if _, err := os.Stat(need); err != nil {
			t.Fatalf("%s: %v (make images builds containerd; hack/install-deps.sh test installs runc and busybox-static)", need, err)
		}
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatalf("runc: %v (hack/install-deps.sh test installs it)", err)
	}
	dir, err := os.MkdirTemp("/tmp", "ctr-")
	if err != nil {
		t.Fatal(err)
	}
	d := containerd.New(containerd.Options{Binary: bin, Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state")})
	r, err := d.Runner()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := newLineWriter()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, out, nil) }()
	t.Cleanup(func() {
		_ = d.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(safety):
			t.Error("containerd did not stop")
		}
		if t.Failed() {
			t.Logf("containerd output:\n%s", out.String())
		}
		_ = exec.Command("umount", "-R", "-l", dir).Run()
		_ = os.RemoveAll(dir)
		cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/ballast-test/*")
		cgroups2, _ := filepath.Glob("/sys/fs/cgroup/*/ballast-test")
		for _, cg := range append(cgroups, cgroups2...) {
			_ = os.Remove(cg)
		}
	})
	deadline := time.Now().Add(safety)
	for d.Healthy(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("containerd not serving: %v\n%s", d.Healthy(ctx), out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	archive := filepath.Join(dir, "busybox.tar")
	if _, err := ociimage.Write(archive, ociimage.Spec{
		Name:       testImage,
		Files:      []ociimage.File{{Path: "/bin/busybox", Source: "/bin/busybox", Mode: 0o755}},
		Entrypoint: []string{"/bin/busybox"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := d.ImportDir(namespaces.WithNamespace(ctx, runner.SystemNamespace), dir, out, nil); err != nil {
		t.Fatal(err)
	}
	return d
}

func containerOpts(d *containerd.Daemon, id string, script string) runner.ContainerOptions {
	return runner.ContainerOptions{
		Client:      d.Client,
		ID:          id,
		Image:       testImage,
		Args:        []string{"sh", "-c", script},
		Hostname:    "test-node",
		CgroupsPath: "/ballast-test/" + id,
		FIFODir:     d.FIFODir(),
		RuncRoot:    d.RuncRoot(),
		GracePeriod: 5 * time.Second,
	}
}

// runThenStop runs a container until it prints "ready", cancels it and
// requires Run to return nil.
func runThenStop(t *testing.T, opts runner.ContainerOptions) *lineWriter {
	t.Helper()
	out := newLineWriter()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Container(opts).Run(ctx, out, nil) }()
	out.waitLine(t, "ready")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stop returned %v", err)
		}
	case <-time.After(safety):
		t.Fatal("Run did not return after cancel")
	}
	return out
}

// gone checks the container was removed after Run returned.
func gone(t *testing.T, d *containerd.Daemon, id string) {
	t.Helper()
	cl, err := d.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), runner.SystemNamespace)
	if _, err := cl.LoadContainer(ctx, id); !errdefs.IsNotFound(err) {
		t.Fatalf("container %s still exists after Run returned (err %v)", id, err)
	}
}

// TestContainer runs real containers through containerd and runc, with the
// semantics of the process runner: output, exit status, started, graceful
// stop, SIGKILL after the grace period, a left-over container replaced, and
// a missing image refused before anything starts.
func TestContainer(t *testing.T) {
	d := realContainerd(t)

	t.Run("exit status and output", func(t *testing.T) {
		out := newLineWriter()
		var started atomic.Bool
		err := runner.Container(containerOpts(d, "exit", "echo to-stdout; echo to-stderr >&2; hostname; exit 3")).
			Run(context.Background(), out, func() { started.Store(true) })
		var ee *runner.ExitError
		if !errors.As(err, &ee) || ee.Code != 3 {
			t.Fatalf("err = %v, want exit status 3", err)
		}
		for _, want := range []string{"to-stdout", "to-stderr", "test-node"} {
			if !strings.Contains(out.String(), want) {
				t.Fatalf("output lacks %q:\n%s", want, out.String())
			}
		}
		if !started.Load() {
			t.Fatal("started was not called")
		}
		gone(t, d, "exit")
	})

	t.Run("graceful stop", func(t *testing.T) {
		out := runThenStop(t, containerOpts(d, "graceful", `trap "echo got-term; exit 0" TERM; echo ready; while :; do sleep 0.1; done`))
		if !strings.Contains(out.String(), "got-term") {
			t.Fatalf("no SIGTERM seen:\n%s", out.String())
		}
		gone(t, d, "graceful")
	})

	t.Run("killed after the grace period", func(t *testing.T) {
		opts := containerOpts(d, "stubborn", `trap "echo ignoring-term" TERM; echo ready; while :; do sleep 0.1; done`)
		opts.GracePeriod = 500 * time.Millisecond
		out := runThenStop(t, opts)
		out.waitLine(t, "ignoring-term")
		gone(t, d, "stubborn")
	})

	t.Run("a left-over container of the same ID is replaced", func(t *testing.T) {
		cl, err := d.Client()
		if err != nil {
			t.Fatal(err)
		}
		ctx := namespaces.WithNamespace(context.Background(), runner.SystemNamespace)
		img, err := cl.GetImage(ctx, testImage)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.NewContainer(ctx, "leftover", containerdclient.WithNewSnapshot("leftover", img),
			containerdclient.WithNewSpec(oci.WithImageConfig(img))); err != nil {
			t.Fatal(err)
		}
		out := newLineWriter()
		if err := runner.Container(containerOpts(d, "leftover", "echo fresh")).Run(context.Background(), out, nil); err != nil {
			t.Fatalf("run over a left-over container: %v", err)
		}
		out.waitLine(t, "fresh")
		gone(t, d, "leftover")
	})

	t.Run("a missing image is refused before start", func(t *testing.T) {
		opts := containerOpts(d, "noimage", "true")
		opts.Image = "ballast.local/absent:v0"
		var started atomic.Bool
		err := runner.Container(opts).Run(context.Background(), newLineWriter(), func() { started.Store(true) })
		if !errors.Is(err, runner.ErrNoImage) || started.Load() {
			t.Fatalf("err = %v, started %v; want ErrNoImage and never started", err, started.Load())
		}
	})
}
