package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/config"
)

// toStatus translates the agent's error kinds into gRPC status codes. This is
// the only place where that translation happens.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, config.ErrInvalid), errors.Is(err, errdefs.ErrInvalidArgument):
		code = codes.InvalidArgument
	case errors.Is(err, errdefs.ErrFailedPrecondition):
		code = codes.FailedPrecondition
	case errors.Is(err, errdefs.ErrNotFound), errors.Is(err, supervisor.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, errdefs.ErrAlreadyExists):
		code = codes.AlreadyExists
	case errors.Is(err, errdefs.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, errdefs.ErrPermissionDenied):
		code = codes.PermissionDenied
	case errors.Is(err, errdefs.ErrResourceExhausted):
		code = codes.ResourceExhausted
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}
