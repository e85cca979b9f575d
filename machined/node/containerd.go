package node

import (
	"context"
	"io"
	"path/filepath"
	"slices"
	"time"

	"github.com/ballast-os/ballast/machined/containerd"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/images"
)

// Service IDs of the container runtime.
const (
	containerdService = "containerd"
	imagesService     = "images"
)

// containerdSpecs are the node's containerd and the import of the image
// archives it needs (every node; the Kubernetes components depend on both).
func (n *Node) containerdSpecs(cfg *config.Config) []supervisor.Spec {
	d := containerd.New(containerd.Options{
		Binary: n.opts.ContainerdPath,
		Root:   filepath.Join(n.store.EphemeralDir(), "lib", "containerd"),
		State:  filepath.Join(n.store.EphemeralDir(), "run", "containerd"),
		CRI: &containerd.CRI{
			SandboxImage: images.PodImageRef(images.Pause, cfg.Cluster.KubernetesVersion),
			CNIBinDirs:   cniBinDirs,
			CNIConfDir:   n.kubeletPaths().CNIConfDir,
		},
	})
	r, err := d.Runner()
	if err != nil {
		// The node still takes its config; the service reports why it
		// cannot run (e.g. no containerd binary: 'make images').
		r = runner.Goroutine(containerdService, func(context.Context, io.Writer) error { return err })
	}
	n.mu.Lock()
	n.ctrd = d
	n.mu.Unlock()
	return []supervisor.Spec{{
		ID:          containerdService,
		Description: "container runtime (containerd " + containerd.Version + ", runc) on " + d.Socket(),
		Runner:      r,
		Restart:     supervisor.Always,
		Health:      &supervisor.HealthCheck{Check: d.Healthy, Interval: 5 * time.Second, Timeout: 5 * time.Second, FailureThreshold: 3},
	}, {
		ID:          imagesService,
		Description: "imports the image archives of " + n.opts.ImagesDir + " into containerd",
		DependsOn:   []string{containerdService},
		Runner: runner.Goroutine(imagesService, func(ctx context.Context, out io.Writer) error {
			// containerd answers a moment after its process started.
			if err := pollUntil(ctx, n.clock, 100*time.Millisecond, d.Healthy); err != nil {
				return err
			}
			// The components' archives first: the apiserver waits for them,
			// the pod images are needed only once a kubelet has registered.
			place := archiveNamespace(cfg)
			only := func(system bool) func(string) string {
				return func(file string) string {
					if ns := place(file); (ns == runner.SystemNamespace) == system {
						return ns
					}
					return ""
				}
			}
			// The OS's archives, then those of the staged Kubernetes
			// releases the config names (nodectl upgrade-k8s).
			dirs := append([]string{n.opts.ImagesDir}, n.releaseImageDirs(cfg)...)
			for _, dir := range dirs {
				if err := d.ImportDir(ctx, dir, out, only(true)); err != nil {
					return err
				}
			}
			if cfg.IsControlPlane() {
				for _, c := range images.ControlPlaneComponents {
					if err := d.EnsureImage(ctx, componentImage(cfg, c), out); err != nil {
						return err
					}
				}
			}
			n.componentImagesOnce.Do(func() { close(n.componentImagesReady) })
			for _, dir := range dirs {
				if err := d.ImportDir(ctx, dir, out, only(false)); err != nil {
					return err
				}
			}
			n.imagesOnce.Do(func() { close(n.imagesReady) })
			return nil
		}),
		Restart: supervisor.OnFailure,
	}}
}

// cniBinDirs hold the CNI plugins: Debian's containernetworking-plugins.
var cniBinDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// archiveNamespace places each archive: pod images in the CRI's namespace,
// the control-plane components in machined's (control planes only).
func archiveNamespace(cfg *config.Config) func(string) string {
	return func(file string) string {
		name := images.ArchiveImage(file)
		switch {
		case slices.Contains(images.PodImages, name):
			return images.PodNamespace
		case slices.Contains(images.ControlPlaneComponents, name) && !cfg.IsControlPlane():
			return ""
		}
		return runner.SystemNamespace
	}
}

// waitImages is the kubelet's condition: the images service finished (a
// Running goroutine would satisfy a dependency too early).
func (n *Node) waitImages(ctx context.Context) error { return waitClosed(ctx, n.imagesReady) }

// waitComponentImages is the control-plane components' condition: their
// images are imported.
func (n *Node) waitComponentImages(ctx context.Context) error {
	return waitClosed(ctx, n.componentImagesReady)
}

// componentImage is the image a control-plane component runs: the config's
// cluster.<component>.image, else the one Ballast builds for the version.
func componentImage(cfg *config.Config, name string) string {
	c := map[string]config.Component{
		images.APIServer:         cfg.Cluster.APIServer,
		images.ControllerManager: cfg.Cluster.ControllerManager,
		images.Scheduler:         cfg.Cluster.Scheduler,
	}[name]
	if c.Image != "" {
		return c.Image
	}
	return images.Ref(name, cfg.Cluster.KubernetesVersion)
}
