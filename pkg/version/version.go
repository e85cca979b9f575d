// Package version holds build information set by the linker:
//
//	-X github.com/ballast-os/ballast/pkg/version.Version=v0.1.0
//	-X github.com/ballast-os/ballast/pkg/version.GitCommit=abc123
//	-X github.com/ballast-os/ballast/pkg/version.CommitTime=2026-12-07T04:30:00Z
package version

import (
	"runtime"
	"time"
)

// Set by -ldflags at build time (see the Makefile).
var (
	Version   = "v0.0.0-dev"
	GitCommit = "unknown"
	// CommitTime is the commit's time (RFC 3339): it orders builds whose
	// versions are not releases (upgrade bundles).
	CommitTime = ""
)

// Committed is CommitTime parsed (zero when unknown).
func Committed() time.Time {
	t, err := time.Parse(time.RFC3339, CommitTime)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// GoVersion is the Go toolchain that built the binary.
func GoVersion() string { return runtime.Version() }
