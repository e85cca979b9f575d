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
	"google.golang.org/grpc/keepalive"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/events"
	"github.com/ballast-os/ballast/machined/logs"
	"github.com/ballast-os/ballast/machined/nodetools"
	"github.com/ballast-os/ballast/machined/supervisor"
)

// gracePeriod bounds how long a stopping server waits for in-flight calls.
const gracePeriod = 3 * time.Second

// Connection limits of the machine API. A client may ping no more often
// than every keepaliveMinTime (gRPC closes a connection that pings faster,
// so a flood of pings cannot keep the agent busy); the server pings an idle
// connection after keepaliveTime and drops it when no answer comes within
// keepaliveTimeout, so half-open connections of vanished clients do not pile
// up. Each connection carries at most maxStreams concurrent calls, and a
// message is at most maxMessageBytes (snapshots travel in 1 MiB chunks).
const (
	keepaliveMinTime  = 10 * time.Second
	keepaliveTime     = 2 * time.Minute
	keepaliveTimeout  = 20 * time.Second
	maxStreams        = 64
	maxMessageBytes   = 4 << 20
	connectionTimeout = 10 * time.Second
)

// serverOptions are the transport limits above.
func serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.MaxConcurrentStreams(maxStreams),
		grpc.MaxRecvMsgSize(maxMessageBytes),
		grpc.MaxSendMsgSize(maxMessageBytes),
		grpc.ConnectionTimeout(connectionTimeout),
	}
}

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
	// SignNodeCertificate signs a worker's CSR when the machine token
	// matches; peerIP is the caller's address as this server saw it, the
	// only address the certificate may name.
	SignNodeCertificate(ctx context.Context, csr []byte, token string, peerIP net.IP) ([]byte, error)
	// SignKubeletCertificate signs a worker kubelet's client CSR
	// (system:node:<checked hostname>) when the machine token matches.
	SignKubeletCertificate(ctx context.Context, csr []byte, token string, peerIP net.IP) ([]byte, error)
	// ScratchDir is where uploads are staged (in EPHEMERAL).
	ScratchDir() string
	// VIPStatus reports the control-plane VIP (empty on nodes without one).
	VIPStatus() *machine.VIPStatusResponse
	// Kubeconfig issues an admin kubeconfig (control-plane nodes only).
	Kubeconfig(ctx context.Context) (*machine.KubeconfigResponse, error)
	// Containers lists the node's system containers.
	Containers(ctx context.Context) (*machine.ContainersResponse, error)
	// NetworkStatus reports links, addresses, routes, resolvers and leases.
	NetworkStatus() (*machine.NetworkStatusResponse, error)
	// TimeStatus reports the clock's synchronization.
	TimeStatus() *machine.TimeStatusResponse
	// BeginUpgrade checks a bundle's manifest against the running build
	// and prepares the inactive slot for its parts.
	BeginUpgrade(manifest []byte, force bool) (Upgrade, error)
	// BeginKubernetes checks a Kubernetes bundle's manifest and prepares
	// the node's directory of that release for the parts it needs.
	BeginKubernetes(manifest []byte) (Upgrade, error)
	// Rollback boots the other slot once (at the next reboot when stage).
	Rollback(ctx context.Context, stage bool, healthTimeout time.Duration) (*machine.RollbackResponse, error)
	// UpgradeStatus reports the slots and the last upgrade or rollback.
	UpgradeStatus() (*machine.UpgradeStatusResponse, error)
	// Events returns the node's machine events.
	Events() *events.Ring
	// Tools returns the node tools (processes, memory, mounts, sockets,
	// usage, allow-listed reads).
	Tools() nodetools.Tools
}

// Upgrade is a bundle being received into a slot.
type Upgrade interface {
	// Wanted lists the parts to send, in order.
	Wanted() []string
	// Write appends data to a part.
	Write(part string, data []byte) error
	// Finish checks every part, switches the slot and (unless stage)
	// reboots into it after the answer.
	Finish(ctx context.Context, stage bool, healthTimeout time.Duration) (*machine.UpgradeResponse, error)
	// Abort drops what was received.
	Abort()
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
	g := grpc.NewServer(append(serverOptions(),
		grpc.Creds(credentials.NewTLS(s.creds.TLSConfig())),
		grpc.UnaryInterceptor(s.unaryAuth),
		grpc.StreamInterceptor(s.streamAuth),
	)...)
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
