package node

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/etcd"
	"github.com/ballast-os/ballast/machined/logs"
	"github.com/ballast-os/ballast/machined/server"
	"github.com/ballast-os/ballast/machined/state"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/version"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// AgentLogID is the log name of machined's own output.
const AgentLogID = "machined"

var _ server.Machine = (*Node)(nil)

// Version implements server.Machine.
func (n *Node) Version() *machine.VersionResponse {
	cfg, _ := n.Config()
	return &machine.VersionResponse{
		Version:     version.Version,
		GitCommit:   version.GitCommit,
		GoVersion:   version.GoVersion(),
		Os:          runtime.GOOS,
		Arch:        runtime.GOARCH,
		Mode:        n.opts.Mode,
		Maintenance: n.creds.Maintenance(),
		Hostname:    n.hostname(cfg),
		CommitTime:  version.CommitTime,
		Slot:        n.runningSlot(),
	}
}

// Configuration implements server.Machine.
func (n *Node) Configuration() (active, staged []byte) {
	n.mu.Lock()
	active = n.cfgBytes
	n.mu.Unlock()
	staged, err := n.store.Staged()
	if err != nil && !errors.Is(err, state.ErrNoConfig) {
		n.log.Warn("cannot read staged config", "error", err)
	}
	return active, staged
}

// Services implements server.Machine.
func (n *Node) Services() server.Services { return protectedServices{n.sup} }

// Logs implements server.Machine.
func (n *Node) Logs(id string) (*logs.Buffer, error) {
	if id == AgentLogID {
		if n.opts.AgentLog == nil {
			return nil, fmt.Errorf("%w: machined's own log is not captured", errdefs.ErrNotFound)
		}
		return n.opts.AgentLog, nil
	}
	b, err := n.sup.Logs(id)
	if err != nil {
		return nil, fmt.Errorf("logs of %q: %w", id, err)
	}
	return b, nil
}

// Reboot implements server.Machine: services stop after the call returns.
func (n *Node) Reboot(context.Context) error {
	n.request(ActionReboot)
	return nil
}

// Shutdown implements server.Machine.
func (n *Node) Shutdown(context.Context) error {
	n.request(ActionShutdown)
	return nil
}

// Reset implements server.Machine: it wipes STATE and EPHEMERAL once every
// service has stopped and boots again into maintenance mode.
func (n *Node) Reset(ctx context.Context, graceful, force bool) error {
	n.log.Info("reset requested", "graceful", graceful, "force", force)
	n.mu.Lock()
	mgr := n.etcdMgr
	n.mu.Unlock()
	if mgr != nil {
		// A control-plane node leaves etcd first; the quorum guard applies.
		if graceful {
			if err := mgr.Leave(ctx, force); err != nil && !errors.Is(err, etcd.ErrNotRunning) {
				return fmt.Errorf("reset: leave etcd: %w", err)
			}
		} else if !force {
			if err := mgr.CheckLeave(ctx); err != nil && !errors.Is(err, etcd.ErrNotRunning) {
				return fmt.Errorf("reset: %w", err)
			}
		}
	}
	n.mu.Lock()
	n.resetWanted = true
	n.mu.Unlock()
	n.request(ActionReboot)
	return nil
}

// protectedServices refuses to stop the service that carries the API itself.
type protectedServices struct{ *supervisor.Supervisor }

func (p protectedServices) Stop(ctx context.Context, id string) error {
	if id == apidService {
		return fmt.Errorf("%w: %s serves this API and cannot be stopped through it (use reboot or shutdown)", errdefs.ErrFailedPrecondition, id)
	}
	return p.Supervisor.Stop(ctx, id)
}

func (p protectedServices) Restart(ctx context.Context, id string) error {
	if id == apidService {
		return fmt.Errorf("%w: %s serves this API and cannot be restarted through it (use reboot)", errdefs.ErrFailedPrecondition, id)
	}
	return p.Supervisor.Restart(ctx, id)
}

// NetworkStatus implements server.Machine.
func (n *Node) NetworkStatus() (*machine.NetworkStatusResponse, error) {
	cfg, _ := n.Config()
	var nw config.Network
	if cfg != nil {
		nw = cfg.Machine.Network
	}
	return n.network.Status(nw)
}

// VIPStatus implements server.Machine.
func (n *Node) VIPStatus() *machine.VIPStatusResponse {
	n.mu.Lock()
	c := n.vip
	n.mu.Unlock()
	if c == nil {
		return &machine.VIPStatusResponse{}
	}
	st := c.Status()
	resp := &machine.VIPStatusResponse{Ip: st.IP, Link: st.Link, Holder: st.Holder, Lease: st.Lease, Term: st.Term, Local: st.Local}
	if !st.Since.IsZero() {
		resp.Since = timestamppb.New(st.Since)
	}
	return resp
}
