package client

import (
	"context"
	"errors"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// ConnectError is a call that failed because the connection could not be
// made: Cause is what the transport saw, with its type (syscall errors such
// as ECONNREFUSED, x509.UnknownAuthorityError, x509.HostnameError,
// tls.AlertError, ErrFingerprintMismatch, ErrNotControlPlane …), so callers
// match it with errors.Is/As instead of reading gRPC's message; Call is the
// call's own error (status.FromError still finds its status).
type ConnectError struct {
	Cause error
	Call  error
}

func (e *ConnectError) Error() string   { return e.Call.Error() }
func (e *ConnectError) Unwrap() []error { return []error{e.Cause, e.Call} }

// connErrors remembers the last dial or handshake failure of a connection.
type connErrors struct {
	mu   sync.Mutex
	last error
}

func (c *connErrors) set(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = err
}

func (c *connErrors) get() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// wrap turns an Unavailable call error into a ConnectError when the
// connection itself failed.
func (c *connErrors) wrap(err error) error {
	if err == nil || status.Code(err) != codes.Unavailable {
		return err
	}
	if cause := c.get(); cause != nil {
		return &ConnectError{Cause: cause, Call: err}
	}
	return err
}

func (c *connErrors) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return c.wrap(invoker(ctx, method, req, reply, cc, opts...))
}

func (c *connErrors) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	return s, c.wrap(err)
}

// dialer dials (from source when set) and records a failure.
func (c *connErrors) dialer(source net.IP) func(context.Context, string) (net.Conn, error) {
	d := &net.Dialer{}
	if source != nil {
		d.LocalAddr = &net.TCPAddr{IP: source}
	}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			c.set(err)
		}
		return conn, err
	}
}

// recordingCreds records TLS handshake failures of the connection.
type recordingCreds struct {
	credentials.TransportCredentials
	errs *connErrors
}

func (r recordingCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := r.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		r.errs.set(unwrapHandshake(err))
	} else {
		r.errs.set(nil)
	}
	return conn, info, err
}

func (r recordingCreds) Clone() credentials.TransportCredentials {
	return recordingCreds{TransportCredentials: r.TransportCredentials.Clone(), errs: r.errs}
}

// unwrapHandshake keeps the TLS layer's own error (with its type).
func unwrapHandshake(err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		err = e
	}
	return err
}
