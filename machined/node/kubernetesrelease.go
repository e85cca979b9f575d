package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/semver"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/events"
	"github.com/ballast-os/ballast/machined/runner"
	"github.com/ballast-os/ballast/machined/server"
	"github.com/ballast-os/ballast/machined/slots"
	"github.com/ballast-os/ballast/pkg/bundle"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/images"
)

// This file keeps the Kubernetes releases staged on the node by `nodectl
// upgrade-k8s`: a release's kubelet and image archives live in
// EPHEMERAL/lib/ballast/kubernetes/<version>/, beside (not in) the OS, so
// the node can run a Kubernetes release other than the one its OS was built
// with. The archives are imported into containerd when staged and again at
// every start whose config names that release; the kubelet binary of the
// config's kubelet release is taken from there.

// releaseDir is where the node keeps the staged release version.
func (n *Node) releaseDir(version string) string {
	return filepath.Join(n.store.EphemeralDir(), "lib", "ballast", "kubernetes", version)
}

// osRelease reports whether the OS was built with Kubernetes version: its
// image archives are of that release.
func (n *Node) osRelease(version string) bool {
	_, err := os.Stat(filepath.Join(n.opts.ImagesDir, images.ArchiveName(images.KubeProxy, version)))
	return err == nil
}

// stagedRelease returns the directory of version when a complete release
// is staged there (its manifest is written last) and the OS does not have
// that release itself, else "".
func (n *Node) stagedRelease(version string) string {
	if !semver.IsValid(version) || n.osRelease(version) {
		return ""
	}
	dir := n.releaseDir(version)
	if _, err := os.Stat(filepath.Join(dir, bundle.ManifestName)); err != nil {
		return ""
	}
	return dir
}

// kubeletBinary is the kubelet of cfg's kubelet release: the staged one,
// else the OS's.
func (n *Node) kubeletBinary(cfg *config.Config) (string, error) {
	if dir := n.stagedRelease(cfg.KubeletVersion()); dir != "" {
		return filepath.Join(dir, "kubelet"), nil
	}
	return runner.FindBinary("kubelet", n.opts.KubeletPath, "build it with 'make images' or pass --kubelet-path")
}

// releaseImageDirs are the staged releases cfg runs (components and
// kubelet/kube-proxy), whose archives are imported at start.
func (n *Node) releaseImageDirs(cfg *config.Config) []string {
	var dirs []string
	for _, v := range []string{cfg.Cluster.KubernetesVersion, cfg.KubeletVersion()} {
		if dir := n.stagedRelease(v); dir != "" && !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

// releasePart says which parts of a Kubernetes bundle a node keeps: the
// kubelet and kube-proxy everywhere, the components on control planes.
func releasePart(controlPlane bool) func(bundle.Part) bool {
	return func(p bundle.Part) bool {
		switch p.Kind {
		case bundle.KindKubelet:
			return true
		case bundle.KindArchive:
			name := images.ArchiveImage(p.Name)
			return name == images.KubeProxy || (controlPlane && slices.Contains(images.ControlPlaneComponents, name))
		}
		return false
	}
}

// BeginKubernetes implements server.Machine: it checks a Kubernetes
// bundle's manifest and prepares the release's directory.
func (n *Node) BeginKubernetes(manifest []byte) (server.Upgrade, error) {
	cfg := n.desired.Current()
	if cfg == nil {
		return nil, fmt.Errorf("%w: the node has no config yet", errdefs.ErrFailedPrecondition)
	}
	m, err := bundle.Parse(manifest)
	if err != nil {
		return nil, bundleError(err)
	}
	switch {
	case !m.IsKubernetes():
		return nil, fmt.Errorf("%w: %w: not a Kubernetes bundle (a kubelet and image archives: make kubernetes); an OS bundle goes to nodectl upgrade", errdefs.ErrInvalidArgument, bundle.ErrInvalid)
	case !semver.IsValid(m.KubernetesVersion) || semver.Canonical(m.KubernetesVersion) != m.KubernetesVersion:
		return nil, fmt.Errorf("%w: %w: kubernetesVersion %q is not a release vX.Y.Z", errdefs.ErrInvalidArgument, bundle.ErrInvalid, m.KubernetesVersion)
	case m.Arch != runtime.GOARCH:
		return nil, bundleError(fmt.Errorf("%w: the bundle is %s, this node is %s", bundle.ErrArch, m.Arch, runtime.GOARCH))
	}
	for _, p := range m.Parts {
		if p.Kind == bundle.KindArchive && !strings.HasSuffix(p.Name, "-"+m.KubernetesVersion+".tar") {
			return nil, fmt.Errorf("%w: %w: archive %s is not of Kubernetes %s", errdefs.ErrInvalidArgument, bundle.ErrInvalid, p.Name, m.KubernetesVersion)
		}
	}
	unlock, err := n.lockUpgrade()
	if err != nil {
		return nil, err
	}
	dir := n.releaseDir(m.KubernetesVersion)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		unlock()
		return nil, err
	}
	// A part the node holds already (the release staged before, or the
	// OS's own archive) is copied, not sent.
	have := func(p bundle.Part) string {
		return slots.Have(p, filepath.Join(dir, p.Name), filepath.Join(n.opts.ImagesDir, p.Name))
	}
	w, err := slots.NewPartsWriter(dir, m, releasePart(cfg.IsControlPlane()), have)
	if err != nil {
		unlock()
		return nil, bundleError(err)
	}
	n.log.Info("kubernetes: receiving a release", "version", m.KubernetesVersion, "parts_sent", len(w.Wanted()))
	return &releaseStage{n: n, w: w, m: m, cfg: cfg, unlock: unlock}, nil
}

// releaseStage is one Kubernetes bundle being received.
type releaseStage struct {
	n      *Node
	w      *slots.Writer
	m      *bundle.Manifest
	cfg    *config.Config
	unlock func()
}

func (s *releaseStage) Wanted() []string { return s.w.Wanted() }
func (s *releaseStage) Write(part string, data []byte) error {
	return bundleError(s.w.Write(part, data))
}

// Abort drops what was received; a release staged before stays.
func (s *releaseStage) Abort() {
	s.w.Abort()
	s.unlock()
}

// Finish checks every part, puts the release in place and imports its
// archives into containerd, so a config naming the release starts its
// components without waiting.
func (s *releaseStage) Finish(ctx context.Context, _ bool, _ time.Duration) (*machine.UpgradeResponse, error) {
	defer s.unlock()
	n := s.n
	n.mu.Lock()
	d := n.ctrd
	n.mu.Unlock()
	if d == nil {
		s.w.Abort()
		return nil, fmt.Errorf("%w: containerd is not running on this node", errdefs.ErrFailedPrecondition)
	}
	if err := s.w.Commit(); err != nil {
		s.w.Abort()
		return nil, bundleError(err)
	}
	start := time.Now()
	var out bytes.Buffer
	if err := d.ImportDir(ctx, n.releaseDir(s.m.KubernetesVersion), &out, archiveNamespace(s.cfg)); err != nil {
		return nil, fmt.Errorf("import the archives of Kubernetes %s: %w", s.m.KubernetesVersion, err)
	}
	n.log.Info("kubernetes: release staged", "version", s.m.KubernetesVersion, "import", strings.TrimSpace(out.String()), "took", time.Since(start).Round(time.Millisecond))
	n.events.Publish(events.Upgrade, "kubernetes", "Kubernetes "+s.m.KubernetesVersion+" staged",
		"action", "kubernetes-staged", "version", s.m.KubernetesVersion)
	return &machine.UpgradeResponse{Version: s.m.KubernetesVersion}, nil
}
