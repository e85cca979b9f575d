package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/peer"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/errdefs"
)

// Etcd is the node's etcd member manager, as the API drives it.
type Etcd interface {
	Bootstrap(ctx context.Context) error
	Recover(ctx context.Context, path string, force bool) error
	Members(ctx context.Context) (*clientv3.MemberListResponse, error)
	MemberStatus(ctx context.Context) (*clientv3.StatusResponse, error)
	Leave(ctx context.Context, force bool) error
	RemoveMember(ctx context.Context, id uint64, force bool) error
	ForfeitLeadership(ctx context.Context) (uint64, error)
	Defrag(ctx context.Context) error
	Alarms(ctx context.Context) ([]*etcdserverpb.AlarmMember, error)
	DisarmAlarms(ctx context.Context) ([]*etcdserverpb.AlarmMember, error)
	Snapshot(ctx context.Context, w io.Writer) error
	// MaxSnapshotBytes bounds a snapshot upload (the backend quota).
	MaxSnapshotBytes() int64
	ClientCert() (ca, crt, key []byte, endpoints []string, err error)
}

// etcdServer implements machine.EtcdServiceServer.
type etcdServer struct {
	machine.UnimplementedEtcdServiceServer
	s *Server
}

func (e *etcdServer) etcd() (Etcd, error) { return e.s.node.Etcd() }

func (e *etcdServer) Bootstrap(ctx context.Context, _ *machine.BootstrapRequest) (*machine.BootstrapResponse, error) {
	m, err := e.etcd()
	if err != nil {
		return nil, err
	}
	if err := m.Bootstrap(ctx); err != nil {
		return nil, err
	}
	return &machine.BootstrapResponse{Message: "etcd cluster bootstrapped"}, nil
}

// Recover receives the snapshot into scratch space, then restores it.
func (e *etcdServer) Recover(stream machine.EtcdService_RecoverServer) error {
	m, err := e.etcd()
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(e.s.node.ScratchDir(), "recover-*.db")
	if err != nil {
		return fmt.Errorf("scratch file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	force := false
	limit, size := m.MaxSnapshotBytes(), int64(0)
	for first := true; ; first = false {
		req, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if first {
			force = req.GetForce()
		}
		if size += int64(len(req.GetData())); size > limit {
			return fmt.Errorf("%w: the snapshot upload exceeds %d bytes, the etcd backend quota (cluster.etcd.quotaBackendBytes) plus room for its hash", errdefs.ErrResourceExhausted, limit)
		}
		if _, err := f.Write(req.GetData()); err != nil {
			return fmt.Errorf("write snapshot: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := m.Recover(stream.Context(), f.Name(), force); err != nil {
		return err
	}
	return stream.SendAndClose(&machine.BootstrapResponse{Message: "snapshot restored; this node runs a new one-member cluster, the other control-plane nodes join it"})
}

func (e *etcdServer) EtcdMembers(ctx context.Context, _ *machine.EtcdMembersRequest) (*machine.EtcdMembersResponse, error) {
	m, err := e.etcd()
	if err != nil {
		return nil, err
	}
	list, err := m.Members(ctx)
	if err != nil {
		return nil, err
	}
	resp := &machine.EtcdMembersResponse{ClusterId: list.Header.ClusterId}
	for _, mem := range list.Members {
		resp.Members = append(resp.Members, &machine.EtcdMember{
			Id: mem.ID, Name: mem.Name, PeerUrls: mem.PeerURLs, ClientUrls: mem.ClientURLs,
			IsLearner: mem.IsLearner, Started: mem.Name != "",
		})
	}
	return resp, nil
}

func (e *etcdServer) EtcdStatus(ctx context.Context, _ *machine.EtcdStatusRequest) (*machine.EtcdStatusResponse, error) {
	m, err := e.etcd()
	if err != nil {
		return nil, err
	}
	st, err := m.MemberStatus(ctx)
	if err != nil {
		return nil, err
	}
	return &machine.EtcdStatusResponse{
		MemberId: st.Header.MemberId, Leader: st.Leader, RaftTerm: st.RaftTerm, RaftIndex: st.RaftIndex,
		RaftAppliedIndex: st.RaftAppliedIndex, DbSize: st.DbSize, DbSizeInUse: st.DbSizeInUse,
		IsLearner: st.IsLearner, Version: st.Version, Errors: st.Errors, ClusterId: st.Header.ClusterId,
	}, nil
}

func (e *etcdServer) EtcdLeave(ctx context.Context, req *machine.EtcdLeaveRequest) (*machine.EtcdLeaveResponse, error) {
	m, err := e.etcd()
	if err != nil {
		return nil, err
	}
	return &machine.EtcdLeaveResponse{}, m.Leave(ctx, req.GetForce())
}

func (e *etcdServer) EtcdRemoveMember(ctx context.Context, req *machine.EtcdRemoveMemberRequest) (*machine.EtcdRemoveMemberResponse, error) {
	m, err := e.etcd()
	if err != nil {
		return nil, err
	}
	return &machine.EtcdRemoveMemberResponse{}, m.RemoveMember(ctx, req.GetId(), req.GetForce())
}

func (e *etcdServer) EtcdForfeitLeadership(ctx context.Context, _ *machine.EtcdForfeitLeadershipRequest) (*machine.EtcdForfeitLeadershipResponse, error) {
	m, err := e.etcd()
	if err != nil {
		return nil, err
	}
	to, err := m.ForfeitLeadership(ctx)
	return &machine.EtcdForfeitLeadershipResponse{NewLeader: to}, err
}

func (e *etcdServer) EtcdDefrag(ctx context.Context, _ *machine.EtcdDefragRequest) (*machine.EtcdDefragResponse, error) {
	m, err := e.etcd()
	if err != nil {
		return nil, err
	}
	return &machine.EtcdDefragResponse{}, m.Defrag(ctx)
}

func alarmsResponse(alarms []*etcdserverpb.AlarmMember) *machine.EtcdAlarmListResponse {
	resp := &machine.EtcdAlarmListResponse{}
	for _, a := range alarms {
		resp.Alarms = append(resp.Alarms, &machine.EtcdAlarm{MemberId: a.MemberID, Alarm: a.Alarm.String()})
	}
	return resp
}

func (e *etcdServer) EtcdAlarmList(ctx context.Context, _ *machine.EtcdAlarmListRequest) (*machine.EtcdAlarmListResponse, error) {
	m, err := e.etcd()
	if err != nil {
		return nil, err
	}
	alarms, err := m.Alarms(ctx)
	return alarmsResponse(alarms), err
}

func (e *etcdServer) EtcdAlarmDisarm(ctx context.Context, _ *machine.EtcdAlarmDisarmRequest) (*machine.EtcdAlarmListResponse, error) {
	m, err := e.etcd()
	if err != nil {
		return nil, err
	}
	alarms, err := m.DisarmAlarms(ctx)
	return alarmsResponse(alarms), err
}

// chunkWriter sends what it is given as DataChunk messages.
type chunkWriter struct {
	stream machine.EtcdService_EtcdSnapshotServer
}

func (c chunkWriter) Write(p []byte) (int, error) {
	const max = 1 << 20
	for off := 0; off < len(p); off += max {
		end := min(off+max, len(p))
		if err := c.stream.Send(&machine.DataChunk{Data: p[off:end]}); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

func (e *etcdServer) EtcdSnapshot(_ *machine.EtcdSnapshotRequest, stream machine.EtcdService_EtcdSnapshotServer) error {
	m, err := e.etcd()
	if err != nil {
		return err
	}
	return m.Snapshot(stream.Context(), chunkWriter{stream})
}

func (e *etcdServer) EtcdClientCert(context.Context, *machine.EtcdClientCertRequest) (*machine.EtcdClientCertResponse, error) {
	m, err := e.etcd()
	if err != nil {
		return nil, err
	}
	ca, crt, key, eps, err := m.ClientCert()
	if err != nil {
		return nil, err
	}
	return &machine.EtcdClientCertResponse{Ca: ca, Crt: crt, Key: key, Endpoints: eps}, nil
}

// certServer implements machine.CertificateServiceServer.
type certServer struct {
	machine.UnimplementedCertificateServiceServer
	s *Server
}

func (c *certServer) SignNodeCertificate(ctx context.Context, req *machine.SignNodeCertificateRequest) (*machine.SignNodeCertificateResponse, error) {
	crt, err := c.s.node.SignNodeCertificate(ctx, req.GetCsr(), req.GetToken(), peerIP(ctx))
	if err != nil {
		return nil, err
	}
	return &machine.SignNodeCertificateResponse{Crt: crt}, nil
}

func (c *certServer) SignKubeletCertificate(ctx context.Context, req *machine.SignNodeCertificateRequest) (*machine.SignNodeCertificateResponse, error) {
	crt, err := c.s.node.SignKubeletCertificate(ctx, req.GetCsr(), req.GetToken(), peerIP(ctx))
	if err != nil {
		return nil, err
	}
	return &machine.SignNodeCertificateResponse{Crt: crt}, nil
}

// peerIP is the caller's address as the server saw it (nil if unknown).
func peerIP(ctx context.Context) net.IP {
	if p, ok := peer.FromContext(ctx); ok {
		if a, ok := p.Addr.(*net.TCPAddr); ok {
			return a.IP
		}
	}
	return nil
}
