package server

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ballast-os/ballast/pkg/pki"
)

type rolesKey struct{}

// Roles returns the caller's roles as established by the interceptor.
func Roles(ctx context.Context) []string {
	r, _ := ctx.Value(rolesKey{}).([]string)
	return r
}

// IsAdmin reports whether the caller holds os:admin.
func IsAdmin(ctx context.Context) bool { return slices.Contains(Roles(ctx), pki.RoleAdmin) }

// authorize decides whether the call may proceed and returns the context
// carrying the caller's roles.
func (s *Server) authorize(ctx context.Context, method string) (context.Context, error) {
	if s.creds.Maintenance() {
		if !maintenanceMethods[method] {
			return nil, status.Errorf(codes.FailedPrecondition,
				"node is in maintenance mode: only ApplyConfiguration and Version are served until a config is applied")
		}
		return ctx, nil
	}
	if tokenMethods[method] {
		return ctx, nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "connection is not TLS")
	}
	leaf, err := s.creds.VerifyClient(info.State.PeerCertificates)
	if err != nil {
		s.log.Info("rpc refused", "method", method, "peer", p.Addr.String(), "reason", err)
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	roles := leaf.Subject.Organization
	allowed := methodRoles[method]
	for _, r := range roles {
		if slices.Contains(allowed, r) {
			s.log.Debug("rpc authorized", "method", method, "roles", roles)
			return context.WithValue(ctx, rolesKey{}, roles), nil
		}
	}
	s.log.Info("rpc denied", "method", method, "roles", roles, "peer", p.Addr.String())
	return nil, status.Errorf(codes.PermissionDenied, "%s requires one of the roles %s; the client certificate has %s",
		shortMethod(method), strings.Join(allowed, ", "), describeRoles(roles))
}

func describeRoles(roles []string) string {
	if len(roles) == 0 {
		return "none"
	}
	return strings.Join(roles, ", ")
}

func shortMethod(full string) string {
	if i := strings.LastIndex(full, "/"); i >= 0 {
		return full[i+1:]
	}
	return full
}

func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer s.recoverPanic(info.FullMethod, &err)
	ctx, err = s.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	resp, err = handler(ctx, req)
	return resp, toStatus(err)
}

func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer s.recoverPanic(info.FullMethod, &err)
	ctx, err := s.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return toStatus(handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx}))
}

// recoverPanic turns a handler panic into an Internal error with the stack
// in the log, instead of taking the whole agent down.
func (s *Server) recoverPanic(method string, err *error) {
	if r := recover(); r != nil {
		s.log.Error("rpc handler panicked", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = status.Errorf(codes.Internal, "%s failed unexpectedly (see 'nodectl logs machined')", shortMethod(method))
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }
