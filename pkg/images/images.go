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
