package node

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/pkg/bundle"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/images"
)

// k8sManifest is a Kubernetes bundle's manifest for version with the
// given parts (name → kind); the digests are of empty files.
func k8sManifest(t *testing.T, version string, parts map[string]string) []byte {
	t.Helper()
	sum := sha256.Sum256(nil)
	m := bundle.Manifest{Format: bundle.Format, Version: "v0.0.0-unit", KubernetesVersion: version, Arch: runtime.GOARCH}
	for name, kind := range parts {
		m.Parts = append(m.Parts, bundle.Part{Name: name, Kind: kind, SHA256: hex.EncodeToString(sum[:])})
	}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func k8sParts(version string) map[string]string {
	parts := map[string]string{"kubelet": bundle.KindKubelet}
	for _, c := range append([]string{images.KubeProxy}, images.ControlPlaneComponents...) {
		parts[images.ArchiveName(c, version)] = bundle.KindArchive
	}
	return parts
}

// configured gives the test node an active config of type typ (its
// services are not started).
func configured(t *testing.T, n *Node, cp []byte, typ string) {
	t.Helper()
	data := cp
	if typ == config.TypeWorker {
		data = patch(t, cp, `{"machine":{"type":"worker"}}`)
	}
	cfg, err := config.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	n.setActive(cfg, data)
}

func TestBeginKubernetesRefuses(t *testing.T) {
	n, _, cp := testNode(t)
	if _, err := n.BeginKubernetes(k8sManifest(t, "v1.36.1", k8sParts("v1.36.1"))); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("a node without a config: %v, want ErrFailedPrecondition", err)
	}
	configured(t, n, cp, config.TypeControlPlane)
	osBundle := map[string]string{"vmlinuz": bundle.KindKernel, "kubelet": bundle.KindKubelet}
	wrongArchive := k8sParts("v1.36.1")
	wrongArchive[images.ArchiveName(images.KubeProxy, "v1.36.3")] = bundle.KindArchive
	for name, tc := range map[string]struct {
		manifest []byte
		want     error
	}{
		"an OS bundle":                  {k8sManifest(t, "v1.36.1", osBundle), errdefs.ErrInvalidArgument},
		"no kubelet":                    {k8sManifest(t, "v1.36.1", map[string]string{"kube-proxy-v1.36.1.tar": bundle.KindArchive}), errdefs.ErrInvalidArgument},
		"not a release":                 {k8sManifest(t, "latest", k8sParts("latest")), errdefs.ErrInvalidArgument},
		"an archive of another release": {k8sManifest(t, "v1.36.1", wrongArchive), errdefs.ErrInvalidArgument},
		"not a manifest":                {[]byte("{"), errdefs.ErrInvalidArgument},
	} {
		if _, err := n.BeginKubernetes(tc.manifest); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if dir := n.stagedRelease("v1.36.1"); dir != "" {
		t.Errorf("a refused bundle left a release at %s", dir)
	}
}

func TestBeginKubernetesWantsTheRolesParts(t *testing.T) {
	for typ, want := range map[string][]string{
		config.TypeControlPlane: {"kube-apiserver-v1.36.1.tar", "kube-controller-manager-v1.36.1.tar", "kube-proxy-v1.36.1.tar", "kube-scheduler-v1.36.1.tar", "kubelet"},
		config.TypeWorker:       {"kube-proxy-v1.36.1.tar", "kubelet"},
	} {
		t.Run(typ, func(t *testing.T) {
			n, _, cp := testNode(t)
			configured(t, n, cp, typ)
			m := k8sManifest(t, "v1.36.1", k8sParts("v1.36.1"))
			u, err := n.BeginKubernetes(m)
			if err != nil {
				t.Fatal(err)
			}
			got := u.Wanted()
			if !reflect.DeepEqual(sortedCopy(got), want) {
				t.Errorf("wanted %v, want %v", got, want)
			}
			// One staging at a time (the node's upgrade lock).
			if _, err := n.BeginKubernetes(m); !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Errorf("a second staging at once: %v", err)
			}
			// Without containerd nothing is put in place.
			if _, err := u.Finish(t.Context(), false, time.Minute); !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Errorf("finish without containerd: %v", err)
			}
			if dir := n.stagedRelease("v1.36.1"); dir != "" {
				t.Errorf("a failed staging left a release at %s", dir)
			}
			if _, err := n.BeginKubernetes(m); err != nil {
				t.Errorf("the lock was not released: %v", err)
			}
		})
	}
}

func TestKubeletBinaryOfTheRelease(t *testing.T) {
	n, _, cp := testNode(t)
	builtIn := filepath.Join(t.TempDir(), "kubelet")
	if err := os.WriteFile(builtIn, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	n.opts.KubeletPath = builtIn
	cfg, err := config.Decode(cp)
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.WithDefaults()
	cfg.Machine.Kubelet.Version = "v1.36.1"
	if got, err := n.kubeletBinary(cfg); err != nil || got != builtIn {
		t.Errorf("nothing staged: %q, %v; want the OS's %s", got, err, builtIn)
	}
	dir := n.releaseDir("v1.36.1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A directory without its manifest is a staging cut short.
	if got, _ := n.kubeletBinary(cfg); got != builtIn {
		t.Errorf("a half-staged release was used: %s", got)
	}
	if err := os.WriteFile(filepath.Join(dir, bundle.ManifestName), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := n.kubeletBinary(cfg); got != filepath.Join(dir, "kubelet") {
		t.Errorf("kubelet %s, want the staged release's", got)
	}
	if dirs := n.releaseImageDirs(cfg); !reflect.DeepEqual(dirs, []string{dir}) {
		t.Errorf("release image dirs %v, want [%s]", dirs, dir)
	}
	cfg.Machine.Kubelet.Version = ""
	if got, _ := n.kubeletBinary(cfg); got != builtIn {
		t.Errorf("the cluster's release (not staged): %s, want the OS's", got)
	}
	// The OS's own release is never taken from a staging (nor imported
	// twice at start).
	n.opts.ImagesDir = t.TempDir()
	if err := os.WriteFile(filepath.Join(n.opts.ImagesDir, images.ArchiveName(images.KubeProxy, "v1.36.1")), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Machine.Kubelet.Version = "v1.36.1"
	if got, _ := n.kubeletBinary(cfg); got != builtIn {
		t.Errorf("the OS's own release: %s, want the OS's kubelet", got)
	}
	if dirs := n.releaseImageDirs(cfg); len(dirs) != 0 {
		t.Errorf("the OS's own release is imported again from %v", dirs)
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
