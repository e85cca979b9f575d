package server

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/nodetools"
)

// Processes implements the RPC.
func (s *Server) Processes(context.Context, *machine.ProcessesRequest) (*machine.ProcessesResponse, error) {
	ps, err := s.node.Tools().Processes()
	return &machine.ProcessesResponse{Processes: ps}, err
}

// Memory implements the RPC.
func (s *Server) Memory(context.Context, *machine.MemoryRequest) (*machine.MemoryResponse, error) {
	return s.node.Tools().Memory()
}

// Mounts implements the RPC.
func (s *Server) Mounts(context.Context, *machine.MountsRequest) (*machine.MountsResponse, error) {
	ms, err := s.node.Tools().Mounts()
	return &machine.MountsResponse{Mounts: ms}, err
}

// Netstat implements the RPC.
func (s *Server) Netstat(_ context.Context, req *machine.NetstatRequest) (*machine.NetstatResponse, error) {
	ss, err := s.node.Tools().Netstat(req.GetListening())
	return &machine.NetstatResponse{Sockets: ss}, err
}

// Usage implements the RPC.
func (s *Server) Usage(context.Context, *machine.UsageRequest) (*machine.UsageResponse, error) {
	return s.node.Tools().Usage()
}

// List implements the RPC.
func (s *Server) List(_ context.Context, req *machine.ListRequest) (*machine.ListResponse, error) {
	fs, err := s.node.Tools().List(req.GetPath())
	if err != nil {
		return nil, toolError(err)
	}
	return &machine.ListResponse{Files: fs}, nil
}

// Read implements the RPC: the file in chunks, at most nodetools.MaxRead
// bytes.
func (s *Server) Read(req *machine.ReadRequest, stream machine.MachineService_ReadServer) error {
	f, err := s.node.Tools().Open(req.GetPath())
	if err != nil {
		return toolError(err)
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	r := io.LimitReader(f, nodetools.MaxRead)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if err := stream.Send(&machine.DataChunk{Data: buf[:n]}); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", req.GetPath(), err)
		}
	}
}

// toolError marks a path outside the allow-list as PermissionDenied.
func toolError(err error) error {
	if errors.Is(err, nodetools.ErrNotAllowed) {
		return fmt.Errorf("%w: %v", errdefs.ErrPermissionDenied, err)
	}
	return err
}

// SystemStatus implements the RPC.
func (s *Server) SystemStatus(context.Context, *machine.SystemStatusRequest) (*machine.SystemStatusResponse, error) {
	return s.node.Tools().SystemStatus()
}
