// Package images names the container images Ballast builds for itself and
// the archives they travel in, so that the build (hack/mkimages), machined
// (which imports them) and nodectl agree.
package images

import "strings"

// Repository is the registry host of the images Ballast builds locally; it
// is never contacted.
const Repository = "ballast.local"

// Control-plane component names (binaries, images and services alike).
const (
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
)

// ControlPlaneComponents are the components every control-plane node runs.
var ControlPlaneComponents = []string{APIServer, ControllerManager, Scheduler}

// Images of pods (the kubelet runs them through the CRI, from containerd's
// PodNamespace).
const (
	// KubeProxy is kube-proxy with Debian's nft (nftables mode), tagged
	// with the Kubernetes version.
	KubeProxy = "kube-proxy"
	// CoreDNS is the cluster DNS server, built from its Go module.
	CoreDNS = "coredns"
	// Pause is the pod sandbox's process (images/pause).
	Pause = "pause"
	// Busybox is Debian's busybox-static, for test and example pods.
	Busybox = "busybox"
)

// Versions of the pod images that do not follow Kubernetes'. hack/tools.env
// pins the same (a unit test holds them equal).
const (
	CoreDNSVersion = "v1.15.0"
	PauseVersion   = "3.10"
	BusyboxVersion = "1.35.0"
)

// PodNamespace is the containerd namespace of the CRI (pods' images).
const PodNamespace = "k8s.io"

// PodImages are the images imported into PodNamespace.
var PodImages = []string{Pause, KubeProxy, CoreDNS, Busybox}

// PodImageRef is the reference of a pod image for a Kubernetes version.
func PodImageRef(name, kubernetesVersion string) string {
	switch name {
	case CoreDNS:
		return Ref(name, CoreDNSVersion)
	case Pause:
		return Ref(name, PauseVersion)
	case Busybox:
		return Ref(name, BusyboxVersion)
	}
	return Ref(name, kubernetesVersion)
}

// ArchiveImage names the image an archive file holds, by its file name
// (<name>-<version>.tar).
func ArchiveImage(file string) string {
	base := strings.TrimSuffix(file, ".tar")
	if i := strings.LastIndex(base, "-"); i > 0 {
		return base[:i]
	}
	return base
}

// Ref is the reference of a locally built component image.
func Ref(component, version string) string {
	return Repository + "/" + component + ":" + version
}

// ArchiveName is the file name of a component's image archive.
func ArchiveName(component, version string) string {
	return component + "-" + version + ".tar"
}

// IsLocal reports whether ref names an image Ballast builds (and so must
// come from an imported archive, not a registry).
func IsLocal(ref string) bool { return strings.HasPrefix(ref, Repository+"/") }
