package server

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/kmsg"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/config"
)

// Version implements the RPC.
func (s *Server) Version(context.Context, *machine.VersionRequest) (*machine.VersionResponse, error) {
	return s.node.Version(), nil
}

// ApplyConfiguration implements the RPC.
func (s *Server) ApplyConfiguration(ctx context.Context, req *machine.ApplyConfigurationRequest) (*machine.ApplyConfigurationResponse, error) {
	return s.node.ApplyConfiguration(ctx, req)
}

// GetConfiguration implements the RPC; secrets are redacted unless the caller is os:admin.
func (s *Server) GetConfiguration(ctx context.Context, _ *machine.GetConfigurationRequest) (*machine.GetConfigurationResponse, error) {
	active, staged := s.node.Configuration()
	resp := &machine.GetConfigurationResponse{Data: active, Staged: staged}
	if IsAdmin(ctx) {
		return resp, nil
	}
	var err error
	resp.Redacted = true
	if resp.Data, err = config.RedactBytes(active); err != nil {
		return nil, err
	}
	if resp.Staged, err = config.RedactBytes(staged); err != nil {
		return nil, err
	}
	return resp, nil
}

// ServiceList implements the RPC.
func (s *Server) ServiceList(context.Context, *machine.ServiceListRequest) (*machine.ServiceListResponse, error) {
	resp := &machine.ServiceListResponse{}
	for _, st := range s.node.Services().List() {
		resp.Services = append(resp.Services, serviceInfo(st))
	}
	return resp, nil
}

func serviceInfo(st supervisor.Status) *machine.ServiceInfo {
	info := &machine.ServiceInfo{
		Id:          st.ID,
		Description: st.Description,
		State:       string(st.State),
		Restarts:    uint32(st.Restarts),
		Health:      &machine.ServiceHealth{Unknown: st.Healthy == nil, LastMessage: st.HealthMessage},
	}
	if st.Healthy != nil {
		info.Health.Healthy = *st.Healthy
	}
	if !st.Since.IsZero() {
		info.Since = timestamppb.New(st.Since)
	}
	for _, e := range st.Events {
		info.Events = append(info.Events, &machine.ServiceEvent{Time: timestamppb.New(e.Time), State: string(e.State), Message: e.Message})
	}
	return info
}

// ServiceStart implements the RPC.
func (s *Server) ServiceStart(_ context.Context, req *machine.ServiceActionRequest) (*machine.ServiceActionResponse, error) {
	if err := s.node.Services().Start(req.GetId()); err != nil {
		return nil, err
	}
	return &machine.ServiceActionResponse{Message: "service " + req.GetId() + " started"}, nil
}

// ServiceStop implements the RPC.
func (s *Server) ServiceStop(ctx context.Context, req *machine.ServiceActionRequest) (*machine.ServiceActionResponse, error) {
	if err := s.node.Services().Stop(ctx, req.GetId()); err != nil {
		return nil, err
	}
	return &machine.ServiceActionResponse{Message: "service " + req.GetId() + " stopped"}, nil
}

// ServiceRestart implements the RPC.
func (s *Server) ServiceRestart(ctx context.Context, req *machine.ServiceActionRequest) (*machine.ServiceActionResponse, error) {
	if err := s.node.Services().Restart(ctx, req.GetId()); err != nil {
		return nil, err
	}
	return &machine.ServiceActionResponse{Message: "service " + req.GetId() + " restarted"}, nil
}

// Logs implements the RPC.
func (s *Server) Logs(req *machine.LogsRequest, stream machine.MachineService_LogsServer) error {
	buf, err := s.node.Logs(req.GetId())
	if err != nil {
		return err
	}
	tail := int(req.GetTailLines())
	if !req.GetFollow() {
		for _, line := range buf.Tail(tail) {
			if err := stream.Send(&machine.LogLine{Line: line}); err != nil {
				return err
			}
		}
		return nil
	}
	ctx := stream.Context()
	for line := range buf.Follow(ctx, tail) {
		if err := stream.Send(&machine.LogLine{Line: line}); err != nil {
			return err
		}
	}
	return nil
}

// Dmesg implements the RPC.
func (s *Server) Dmesg(req *machine.DmesgRequest, stream machine.MachineService_DmesgServer) error {
	return kmsg.Read(stream.Context(), kmsg.Path, req.GetFollow(), func(line string) error {
		return stream.Send(&machine.LogLine{Line: line})
	})
}

// Reboot implements the RPC.
func (s *Server) Reboot(ctx context.Context, _ *machine.RebootRequest) (*machine.RebootResponse, error) {
	return &machine.RebootResponse{}, s.node.Reboot(ctx)
}

// Shutdown implements the RPC.
func (s *Server) Shutdown(ctx context.Context, _ *machine.ShutdownRequest) (*machine.ShutdownResponse, error) {
	return &machine.ShutdownResponse{}, s.node.Shutdown(ctx)
}

// Reset implements the RPC.
func (s *Server) Reset(ctx context.Context, req *machine.ResetRequest) (*machine.ResetResponse, error) {
	return &machine.ResetResponse{}, s.node.Reset(ctx, req.GetGraceful(), req.GetForce())
}

// NetworkStatus implements machine.MachineServiceServer.
func (s *Server) NetworkStatus(context.Context, *machine.NetworkStatusRequest) (*machine.NetworkStatusResponse, error) {
	return s.node.NetworkStatus()
}

// VIPStatus implements machine.MachineServiceServer.
func (s *Server) VIPStatus(context.Context, *machine.VIPStatusRequest) (*machine.VIPStatusResponse, error) {
	return s.node.VIPStatus(), nil
}

// Kubeconfig implements machine.MachineServiceServer.
func (s *Server) Kubeconfig(ctx context.Context, _ *machine.KubeconfigRequest) (*machine.KubeconfigResponse, error) {
	return s.node.Kubeconfig(ctx)
}

// Containers implements machine.MachineServiceServer.
func (s *Server) Containers(ctx context.Context, _ *machine.ContainersRequest) (*machine.ContainersResponse, error) {
	return s.node.Containers(ctx)
}

// TimeStatus implements machine.MachineServiceServer.
func (s *Server) TimeStatus(context.Context, *machine.TimeStatusRequest) (*machine.TimeStatusResponse, error) {
	return s.node.TimeStatus(), nil
}

// maxHealthTimeout bounds a caller's --health-timeout.
const maxHealthTimeout = time.Hour

// healthTimeout reads a request's health timeout (zero: the default).
func healthTimeout(d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	t := d.AsDuration()
	if t < 0 || t > maxHealthTimeout {
		return 0, status.Errorf(codes.InvalidArgument, "health_timeout %s: want between 0 and %s", t, maxHealthTimeout)
	}
	return t, nil
}

// Upgrade implements the RPC: UpgradeStart, the wanted parts, the chunks,
// then the switch. Anything short of a complete, matching bundle leaves
// both slots as they were. With UpgradeStart.kubernetes the same exchange
// stages a Kubernetes bundle instead.
func (s *Server) Upgrade(stream machine.MachineService_UpgradeServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	start := req.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first message must be UpgradeStart")
	}
	timeout, err := healthTimeout(start.HealthTimeout)
	if err != nil {
		return err
	}
	begin := func() (Upgrade, error) { return s.node.BeginUpgrade(start.Manifest, start.Force) }
	if start.Kubernetes {
		begin = func() (Upgrade, error) { return s.node.BeginKubernetes(start.Manifest) }
	}
	u, err := begin()
	if err != nil {
		return toStatus(err)
	}
	finished := false
	defer func() {
		if !finished {
			u.Abort()
		}
	}()
	if err := stream.Send(&machine.UpgradeResponse{Wanted: u.Wanted()}); err != nil {
		return err
	}
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		chunk := req.GetChunk()
		if chunk == nil {
			return status.Error(codes.InvalidArgument, "after UpgradeStart only UpgradeChunks may follow")
		}
		if err := u.Write(chunk.Part, chunk.Data); err != nil {
			return toStatus(err)
		}
	}
	finished = true // Finish cleans up after itself
	resp, err := u.Finish(stream.Context(), start.Stage, timeout)
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(resp)
}

// Rollback implements the RPC.
func (s *Server) Rollback(ctx context.Context, req *machine.RollbackRequest) (*machine.RollbackResponse, error) {
	timeout, err := healthTimeout(req.HealthTimeout)
	if err != nil {
		return nil, err
	}
	resp, err := s.node.Rollback(ctx, req.Stage, timeout)
	return resp, toStatus(err)
}

// UpgradeStatus implements the RPC.
func (s *Server) UpgradeStatus(context.Context, *machine.UpgradeStatusRequest) (*machine.UpgradeStatusResponse, error) {
	resp, err := s.node.UpgradeStatus()
	return resp, toStatus(err)
}
