package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/storage/wal"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/desired"
	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/events"
	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/config"
)

// Errors callers can check.
var (
	ErrNotControlPlane = fmt.Errorf("%w: etcd runs on control-plane nodes only", errdefs.ErrFailedPrecondition)
	ErrNotRunning      = fmt.Errorf("%w: etcd is not running on this node", errdefs.ErrUnavailable)
	ErrQuorum          = fmt.Errorf("%w: the operation would break etcd quorum", errdefs.ErrFailedPrecondition)
)

// Options configure a Manager.
type Options struct {
	Logger *slog.Logger
	// Name is the member name (the node's hostname) and AdvertiseIP the
	// address peers and clients reach this member at, when it starts;
	// SetAddress changes both.
	Name        string
	AdvertiseIP string
	// DataDir, PKIDir and SnapshotDir live in EPHEMERAL.
	DataDir, PKIDir, SnapshotDir string
	// Desired is the node's desired config; the manager watches it for the
	// fields that are live (the snapshot schedule, the peers).
	Desired *desired.Config
	// Clock drives every wait and deadline (a fake one in tests).
	Clock clock.Clock
	// BeforeLeave, when set, runs before this member leaves the cluster
	// (the VIP is given up first).
	BeforeLeave func(ctx context.Context)
	// Events receives leader and membership events (nil: none).
	Events events.Publisher
}

// Manager runs this node's etcd member and answers membership operations.
type Manager struct {
	opts  Options
	log   *slog.Logger
	pki   pkiPaths
	clock clock.Clock

	requests chan request
	// snapshots counts the scheduled snapshots written (for tests).
	snapshots atomic.Int64

	mu      sync.Mutex
	running *member
	local   *clientv3.Client // to the running member
	tlsConf *tls.Config      // of this node's etcd client certificate
	status  string           // what the member is doing, for health and logs
	left    bool             // left the cluster: stay out until the next boot
	// pendingMarker is written into a freshly recovered cluster.
	pendingMarker *recoveryMarker
	id            identity // the member's name and address (SetAddress)

	// readdress carries SetAddress's notice to the Run loop.
	readdress chan struct{}
	// certsFor is the identity the certificates were issued for (Run's).
	certsFor identity
}

// request is an operation that must run in the Run loop, which owns the member.
type request struct {
	kind     requestKind
	snapshot string // recover: the restored data directory to swap in
	prevID   uint64 // recover: the cluster being replaced
	done     chan error
}

type requestKind int

const (
	reqBootstrap requestKind = iota
	reqRecover
	reqLeave
	reqRejoin    // stale data detected: wipe and join again
	reqReaddress // the node's address changed: start again with it
)

// New returns a manager; Run starts the member.
func New(opts Options) *Manager {
	if opts.Clock == nil {
		opts.Clock = clock.Real()
	}
	return &Manager{
		opts:      opts,
		clock:     opts.Clock,
		log:       opts.Logger,
		pki:       newPKIPaths(opts.PKIDir),
		requests:  make(chan request),
		readdress: make(chan struct{}, 1),
		status:    "starting",
		id:        identity{name: opts.Name, ip: opts.AdvertiseIP},
	}
}

// config is the node's current desired config.
func (m *Manager) config() *config.Config { return m.opts.Desired.Current() }

// MaxSnapshotBytes bounds a snapshot upload: the backend quota plus room for
// the snapshot's integrity hash and bbolt's page rounding.
func (m *Manager) MaxSnapshotBytes() int64 {
	return m.config().WithDefaults().Cluster.Etcd.QuotaBackendBytes + 1<<20
}

func (m *Manager) peerURL() string {
	return "https://" + net.JoinHostPort(m.advertiseIP(), strconv.Itoa(PeerPort))
}

func (m *Manager) clientURL() string {
	return "https://" + net.JoinHostPort(m.advertiseIP(), strconv.Itoa(ClientPort))
}

// hasData reports whether this node holds etcd data from an earlier run:
// an initialized member, which has a write-ahead log (as etcd itself decides).
func (m *Manager) hasData() bool {
	return wal.Exist(filepath.Join(m.opts.DataDir, "member", "wal"))
}

// hasPartialData reports a member directory without a write-ahead log: a
// join was interrupted (kill -9, power loss) after etcd created its backend
// and before it wrote its log. Started from it, etcd would look for a
// cluster it was never told about, forever.
func (m *Manager) hasPartialData() bool {
	_, err := os.Stat(filepath.Join(m.opts.DataDir, "member"))
	return err == nil && !m.hasData()
}

func (m *Manager) setStatus(s string) {
	m.mu.Lock()
	changed := m.status != s
	m.status = s
	m.mu.Unlock()
	if changed {
		m.log.Info("etcd member status", "status", s)
	}
}

// Run is the etcd service: it starts the member from its data, or joins an
// existing cluster, or waits for `nodectl bootstrap`, and keeps serving until
// ctx ends. Leave, recovery and stale-data detection restart the loop.
func (m *Manager) Run(ctx context.Context, out io.Writer) error {
	cfg := m.config()
	if cfg == nil || !cfg.IsControlPlane() {
		return ErrNotControlPlane
	}
	m.certsFor = identity{} // issued again on every start, for the config's CA
	for ctx.Err() == nil {
		var next *request
		var err error
		if err := m.ensureCerts(); err != nil {
			return err
		}
		if m.hasPartialData() {
			m.log.Warn("etcd data of an interrupted join (no write-ahead log); wiping it to join again")
			if err := m.wipe(); err != nil {
				return err
			}
		}
		switch {
		case m.isLeft():
			m.setStatus("left the cluster; reboot or reset the node to join again")
			next, err = m.idle(ctx)
		case m.hasData():
			next, err = m.serveExisting(ctx, out)
		default:
			next, err = m.joinOrWait(ctx, out)
		}
		if err != nil {
			return err
		}
		if next != nil {
			next.done <- m.handleOffline(*next)
		}
	}
	return nil
}

func (m *Manager) isLeft() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.left
}

// idle answers requests while no member runs and nothing should start.
func (m *Manager) idle(ctx context.Context) (*request, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, nil
		case r := <-m.requests:
			switch r.kind {
			case reqRecover:
				return &r, nil
			case reqLeave:
				r.done <- nil // already out
			default:
				r.done <- fmt.Errorf("%w: this node left the etcd cluster; reboot it to join again", errdefs.ErrFailedPrecondition)
			}
		}
	}
}

// handleOffline carries out a request that needs the member stopped: the
// member has already been closed by serve.
func (m *Manager) handleOffline(r request) error {
	switch r.kind {
	case reqLeave:
		m.mu.Lock()
		m.left = true
		m.mu.Unlock()
		return m.wipe()
	case reqRejoin:
		return m.wipe()
	case reqRecover:
		return m.restore(r)
	case reqReaddress:
		m.log.Info("starting the member again at the new address", "address", m.advertiseIP())
	}
	return nil
}

// wipe removes the member's data (it no longer belongs to any cluster).
func (m *Manager) wipe() error {
	if err := os.RemoveAll(m.opts.DataDir); err != nil {
		return fmt.Errorf("wipe etcd data: %w", err)
	}
	_ = os.Remove(m.idFile())
	m.log.Info("etcd data wiped", "dir", m.opts.DataDir)
	return nil
}

// serve runs a started member until ctx ends, it fails, or a request needs
// it stopped; background duties run alongside.
func (m *Manager) serve(ctx context.Context, mem *member) (*request, error) {
	// One client to the local member serves every operation while it runs.
	local, err := m.newClient([]string{m.clientURL()})
	if err != nil {
		mem.Close()
		return nil, err
	}
	m.mu.Lock()
	m.running, m.local = mem, local
	m.mu.Unlock()
	m.rememberID(mem.ID())
	defer func() {
		m.mu.Lock()
		m.running, m.local = nil, nil
		m.mu.Unlock()
		local.Close()
		mem.Close()
		m.log.Info("etcd member stopped")
	}()
	m.setStatus("running")
	// The duties end before the member is closed, whichever way serve
	// returns: cancel first, then wait (two plain defers would run in the
	// other order and wait forever when the member failed or was removed).
	dctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	duties := []func(context.Context){m.watchStale, m.scheduleSnapshots,
		func(ctx context.Context) { m.watchLeader(ctx, mem) }}
	for _, d := range duties {
		wg.Add(1)
		go func() { defer wg.Done(); d(dctx) }()
	}
	for {
		select {
		case <-ctx.Done():
			return nil, nil
		case err := <-mem.Err():
			if mem.Removed() {
				return m.removedFromCluster(), nil
			}
			return nil, fmt.Errorf("etcd member failed: %w", err)
		case <-mem.Stopped():
			if mem.Removed() {
				return m.removedFromCluster(), nil
			}
			return nil, errors.New("etcd member stopped unexpectedly")
		case <-m.readdress:
			if m.addressChanged() {
				cancel()
				return &request{kind: reqReaddress, done: make(chan error, 1)}, nil
			}
		case r := <-m.requests:
			switch r.kind {
			case reqBootstrap:
				r.done <- fmt.Errorf("%w: this node is already an etcd member", errdefs.ErrAlreadyExists)
			default:
				cancel()
				return &r, nil
			}
		}
	}
}

// idFile records this node's member ID next to its data, so the member is
// found again after a hostname (member name) change.
func (m *Manager) idFile() string { return m.opts.DataDir + ".member-id" }

func (m *Manager) rememberID(id uint64) {
	if err := atomicfile.Write(m.idFile(), []byte(strconv.FormatUint(id, 16)), 0o600); err != nil {
		m.log.Warn("cannot record the member ID", "error", err)
	}
}

// rememberedID returns the recorded member ID (0 when unknown).
func (m *Manager) rememberedID() uint64 {
	b, err := os.ReadFile(m.idFile())
	if err != nil {
		return 0
	}
	id, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
	return id
}

// removedFromCluster handles this member's removal, by its own leave or by
// another member: its data no longer belongs to any cluster. It is wiped and
// the node stays out until it reboots, like after a leave.
func (m *Manager) removedFromCluster() *request {
	m.log.Info("this member was removed from the etcd cluster; its data is wiped and it stays out until the node reboots")
	m.publishMember("this member was removed from the etcd cluster", "action", "removed", "member", m.name())
	return &request{kind: reqLeave, done: make(chan error, 1)}
}

// serveExisting starts the member from its data. When this node's address
// changed, its peer URL is updated through the other members first.
func (m *Manager) serveExisting(ctx context.Context, out io.Writer) (*request, error) {
	m.setStatus("starting from existing data")
	m.mu.Lock()
	recovered := m.pendingMarker != nil
	m.mu.Unlock()
	if !recovered {
		m.updateOwnPeerURL(ctx)
	}
	mem, err := startMember(ctx, m.memberConfig(embed.ClusterStateFlagExisting, "", ""), out)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, err
	}
	return m.serve(ctx, mem)
}

func (m *Manager) memberConfig(state, initial, token string) memberConfig {
	cfg := m.config().WithDefaults()
	return memberConfig{
		name: m.name(), dataDir: m.opts.DataDir, peerURL: m.peerURL(), clientURL: m.clientURL(),
		state: state, initial: initial, token: token, pki: m.pki, tunables: cfg.Cluster.Etcd, maxLearners: maxLearners,
	}
}

// maxLearners lets the control planes of a new cluster join together: they
// are all added as learners while the first node is the only voter, so
// etcd's strict reconfiguration check (every voter connected for 5 s before
// a member is added) has no other voter to wait for. One learner at a time
// made each join after the first wait out that window.
const maxLearners = 4

// joinOrWait joins the cluster a peer belongs to, or waits for bootstrap.
func (m *Manager) joinOrWait(ctx context.Context, out io.Writer) (*request, error) {
	// Poll briskly at first (a bootstrap or a learner slot is usually
	// seconds away), then settle to a slower pace.
	const fastPolls = 40
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		// A change of the peers (live) starts the next attempt at once.
		_, changed := m.opts.Desired.Get()
		found, err := m.discover(ctx)
		if err == nil && found != nil {
			mem, err := m.join(ctx, found, out)
			found.cli.Close()
			if err == nil {
				return m.serve(ctx, mem)
			}
			if ctx.Err() != nil {
				return nil, nil
			}
			if errors.Is(err, errLearnerBusy) {
				m.log.Debug("another node is joining; waiting for the learner slot")
			} else {
				m.log.Warn("etcd join failed; retrying", "error", err, "retry_in", backoff)
			}
		} else {
			m.setStatus("waiting: no etcd cluster found among the peers (run 'nodectl bootstrap' on one control-plane node)")
		}
		t := m.clock.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil
		case <-t.C():
		case <-changed:
			t.Stop()
			m.log.Info("config changed; looking for the cluster again")
		case <-m.readdress:
			t.Stop()
			if err := m.ensureCerts(); err != nil {
				return nil, err
			}
		case r := <-m.requests:
			t.Stop()
			switch r.kind {
			case reqBootstrap:
				mem, err := m.bootstrapNew(ctx, out)
				r.done <- err
				if err != nil {
					continue
				}
				return m.serve(ctx, mem)
			case reqRecover:
				return &r, nil
			default:
				r.done <- ErrNotRunning
			}
		}
		if attempt >= fastPolls {
			backoff = 3 * time.Second
		}
	}
}

// bootstrapNew creates a one-member cluster.
func (m *Manager) bootstrapNew(ctx context.Context, out io.Writer) (*member, error) {
	if m.hasData() {
		return nil, fmt.Errorf("%w: this node already has etcd data", errdefs.ErrAlreadyExists)
	}
	m.setStatus("bootstrapping a new cluster")
	mem, err := startMember(ctx, m.memberConfig(embed.ClusterStateFlagNew, "", clusterToken(m.config())), out)
	if err != nil {
		_ = m.wipe()
		return nil, err
	}
	m.log.Info("etcd cluster bootstrapped", "member", m.name(), "cluster_id", fmt.Sprintf("%x", mem.ClusterID()))
	m.publishMember("bootstrapped a new etcd cluster", "action", "bootstrapped", "member", m.name())
	return mem, nil
}

func clusterToken(cfg *config.Config) string {
	return "ballast-" + cfg.Cluster.Name
}

// Bootstrap creates the cluster on this node. It is refused when the node has
// data, is a member, or a peer already belongs to a cluster.
func (m *Manager) Bootstrap(ctx context.Context) error {
	if m.config() == nil || !m.config().IsControlPlane() {
		return ErrNotControlPlane
	}
	if _, err := m.current(); err == nil {
		return fmt.Errorf("%w: this node is already an etcd member", errdefs.ErrAlreadyExists)
	}
	if m.hasData() {
		return fmt.Errorf("%w: this node already has etcd data (reset it first, or use bootstrap --recover-from)", errdefs.ErrAlreadyExists)
	}
	if found, err := m.discover(ctx); err == nil && found != nil {
		found.cli.Close()
		return fmt.Errorf("%w: an etcd cluster already exists (member at %s answers); this node joins it by itself", errdefs.ErrAlreadyExists, found.endpoint)
	}
	return m.send(ctx, request{kind: reqBootstrap})
}

// send hands a request to the Run loop and waits for its outcome.
func (m *Manager) send(ctx context.Context, r request) error {
	r.done = make(chan error, 1)
	select {
	case m.requests <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-m.clock.After(30 * time.Second):
		return fmt.Errorf("%w: the etcd service is busy or not running", errdefs.ErrUnavailable)
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// LocalClient returns the client of the running local member.
func (m *Manager) LocalClient() (*clientv3.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.local == nil {
		return nil, fmt.Errorf("%w (%s)", ErrNotRunning, m.status)
	}
	return m.local, nil
}

// Status says what the member is doing, in words for health messages.
func (m *Manager) Status() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}
