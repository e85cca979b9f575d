// Package errdefs defines the error kinds the agent's packages return so
// that the gRPC boundary (and only it) can translate them into status codes,
// in the spirit of containerd's errdefs.
package errdefs

import "errors"

// Error kinds; wrap them: fmt.Errorf("%w: service %q is protected", errdefs.ErrFailedPrecondition, id).
var (
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrUnavailable        = errors.New("unavailable")
	ErrPermissionDenied   = errors.New("permission denied")
	ErrResourceExhausted  = errors.New("resource exhausted")
)
