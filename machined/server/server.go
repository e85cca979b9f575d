// Package server is the machine API: the gRPC service every nodectl command
// talks to. It authenticates callers (maintenance mode or mTLS with roles,
// see roles.go), translates errors into status codes, and delegates the work
// to the node through the Machine interface.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/logs"
	"github.com/ballast-os/ballast/machined/supervisor"
)

// gracePeriod bounds how long a stopping server waits for in-flight calls.
const gracePeriod = 3 * time.Second

// Machine is what the API needs from the node.
type Machine interface {
	Version() *machine.VersionResponse
	ApplyConfiguration(ctx context.Context, req *machine.ApplyConfigurationRequest) (*machine.ApplyConfigurationResponse, error)
	// Configuration returns the active and staged configs (nil when absent).
	Configuration() (active, staged []byte)
	Services() Services
	// Logs returns a service's log buffer, or the agent's own for "machined".
	Logs(id string) (*logs.Buffer, error)
	Reboot(ctx context.Context) error
	Shutdown(ctx context.Context) error
	Reset(ctx context.Context, graceful, force bool) error
	// Etcd returns the etcd manager (control-plane nodes only).
	Etcd() (Etcd, error)
	// SignNodeCertificate signs a worker's CSR when the machine token matches.
	SignNodeCertificate(csr []byte, token string) ([]byte, error)
	// ScratchDir is where uploads are staged (in EPHEMERAL).
	ScratchDir() string
}

// Services is the part of the supervisor the API drives.
type Services interface {
	List() []supervisor.Status
	Start(id string) error
	Stop(ctx context.Context, id string) error
	Restart(ctx context.Context, id string) error
}

// Server serves the machine API.
type Server struct {
	machine.UnimplementedMachineServiceServer

	creds *Credentials
	node  Machine
	log   *slog.Logger
}

// New returns a server that authenticates with creds and acts on node.
func New(creds *Credentials, node Machine, log *slog.Logger) *Server {
	return &Server{creds: creds, node: node, log: log}
}

// Run serves on ln until ctx ends, then stops gracefully.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	g := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(s.creds.TLSConfig())),
		grpc.UnaryInterceptor(s.unaryAuth),
		grpc.StreamInterceptor(s.streamAuth),
	)
	machine.RegisterMachineServiceServer(g, s)
	machine.RegisterEtcdServiceServer(g, &etcdServer{s: s})
	machine.RegisterCertificateServiceServer(g, &certServer{s: s})
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(ln) }()
	s.log.Info("machine API listening", "address", ln.Addr().String(), "maintenance", s.creds.Maintenance())
	select {
	case <-ctx.Done():
		// Let in-flight calls (the Reboot or Apply that caused the stop)
		// finish, but do not wait for followers of a log stream.
		stopped := make(chan struct{})
		go func() { g.GracefulStop(); close(stopped) }()
		t := time.NewTimer(gracePeriod)
		defer t.Stop()
		select {
		case <-stopped:
		case <-t.C:
			g.Stop()
		}
		return nil
	case err := <-errc:
		return fmt.Errorf("serve machine API: %w", err)
	}
}
