// Package version holds build information set by the linker:
//
//	-X github.com/ballast-os/ballast/pkg/version.Version=v0.1.0
//	-X github.com/ballast-os/ballast/pkg/version.GitCommit=abc123
package version

import "runtime"

// Set by -ldflags at build time (see the Makefile).
var (
	Version   = "v0.0.0-dev"
	GitCommit = "unknown"
)

// GoVersion is the Go toolchain that built the binary.
func GoVersion() string { return runtime.Version() }
