// Package etcd runs the embedded etcd member of a control-plane node and
// manages its membership: bootstrap, self-join as a learner with promotion,
// stale-member cleanup, leave, peer-address updates, snapshots and recovery,
// and the quorum guard that protects every removal.
//
// etcd itself is go.etcd.io/etcd/server/v3/embed behind the small adapter in
// this file, used in the order embed/doc.go documents: StartEtcd, wait on
// ReadyNotify with a timeout, watch Err, Close.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ballast-os/ballast/pkg/config"
)

// Ports etcd listens on.
const (
	ClientPort = 2379
	PeerPort   = 2380
)

// readyTimeout bounds how long a starting member may take to become ready.
const readyTimeout = 60 * time.Second

// memberConfig is everything needed to start one member.
type memberConfig struct {
	name        string
	dataDir     string
	peerURL     string
	clientURL   string
	state       string // embed.ClusterStateFlagNew or ...Existing
	initial     string // initial cluster, name=url,…
	token       string
	pki         pkiPaths
	tunables    config.Etcd
	maxLearners int
}

// member is a running embedded etcd.
type member struct {
	e *embed.Etcd
}

// startMember starts etcd and waits until it is ready or fails.
func startMember(ctx context.Context, mc memberConfig, out io.Writer) (_ *member, err error) {
	// etcd panics on some inconsistent data dirs while bootstrapping in
	// this goroutine; report that as an error rather than losing the agent.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("etcd panicked while starting: %v", r)
		}
	}()
	cfg := embed.NewConfig()
	cfg.Name = mc.name
	cfg.Dir = mc.dataDir
	peer, err := url.Parse(mc.peerURL)
	if err != nil {
		return nil, fmt.Errorf("peer URL: %w", err)
	}
	client, err := url.Parse(mc.clientURL)
	if err != nil {
		return nil, fmt.Errorf("client URL: %w", err)
	}
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenMetricsUrls = nil
	if mc.initial != "" {
		cfg.InitialCluster = mc.initial
	} else {
		cfg.InitialCluster = mc.name + "=" + mc.peerURL
	}
	cfg.ClusterState = mc.state
	if mc.token != "" {
		cfg.InitialClusterToken = mc.token
	}
	cfg.StrictReconfigCheck = true
	if mc.maxLearners > 0 {
		cfg.MaxLearners = mc.maxLearners
	}
	t := mc.tunables
	cfg.TickMs = uint(t.HeartbeatInterval.Std() / time.Millisecond)
	cfg.ElectionMs = uint(t.ElectionTimeout.Std() / time.Millisecond)
	cfg.QuotaBackendBytes = t.QuotaBackendBytes
	cfg.SnapshotCount = t.SnapshotCount
	tlsInfo := transport.TLSInfo{
		CertFile:       mc.pki.serverCrt,
		KeyFile:        mc.pki.serverKey,
		TrustedCAFile:  mc.pki.ca,
		ClientCertAuth: true,
	}
	cfg.ClientTLSInfo = tlsInfo
	cfg.PeerTLSInfo = transport.TLSInfo{
		CertFile:       mc.pki.peerCrt,
		KeyFile:        mc.pki.peerKey,
		TrustedCAFile:  mc.pki.ca,
		ClientCertAuth: true,
	}
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapLogger(out))

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	t0 := time.NewTimer(readyTimeout)
	defer t0.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return &member{e: e}, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd failed while starting: %w", err)
	case <-t0.C:
		e.Server.Stop()
		e.Close()
		return nil, errors.New("etcd did not become ready in time")
	case <-ctx.Done():
		e.Server.Stop()
		e.Close()
		return nil, ctx.Err()
	}
}

// Stopped is closed when the member's server stops, on its own or not.
func (m *member) Stopped() <-chan struct{} { return m.e.Server.StopNotify() }

// Removed reports whether the cluster removed this member (it then stops
// itself).
func (m *member) Removed() bool {
	rc, ok := m.e.Server.Cluster().(interface{ IsIDRemoved(types.ID) bool })
	return ok && rc.IsIDRemoved(m.e.Server.MemberID())
}

// status reads the member's state in process. etcd's own Status RPC panics
// the whole process when asked on a member that was just removed (it looks
// the local member up unconditionally), so the agent never uses it locally.
func (m *member) status() (*etcdserverpb.StatusResponse, error) {
	srv := m.e.Server
	id := srv.MemberID()
	if !srv.IsMemberExist(id) {
		return nil, errors.New("this member was removed from the cluster")
	}
	self := srv.Cluster().Member(id)
	be := srv.Backend()
	return &etcdserverpb.StatusResponse{
		Header:           &etcdserverpb.ResponseHeader{ClusterId: uint64(srv.Cluster().ID()), MemberId: uint64(id)},
		Version:          version.Version,
		DbSize:           be.Size(),
		DbSizeInUse:      be.SizeInUse(),
		Leader:           uint64(srv.Leader()),
		RaftIndex:        srv.CommittedIndex(),
		RaftTerm:         srv.Term(),
		RaftAppliedIndex: srv.AppliedIndex(),
		IsLearner:        self != nil && self.IsLearner,
	}, nil
}

// Err reports a fatal error of the running member.
func (m *member) Err() <-chan error { return m.e.Err() }

// ID is the member's ID.
func (m *member) ID() uint64 { return uint64(m.e.Server.MemberID()) }

// ClusterID is the cluster's ID as this member knows it.
func (m *member) ClusterID() uint64 { return uint64(m.e.Server.Cluster().ID()) }

// Close stops the member.
func (m *member) Close() { m.e.Close() }

// zapLogger writes etcd's logs to the service log.
func zapLogger(out io.Writer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(out), zap.InfoLevel)
	return zap.New(core)
}
