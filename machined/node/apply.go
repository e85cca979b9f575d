package node

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/events"
	"github.com/ballast-os/ballast/pkg/config"
)

// DefaultTryTimeout is how long a TRY config lives when the request names none.
const DefaultTryTimeout = time.Minute

// ApplyConfiguration validates a config and applies it in the requested mode.
// The handler only validates, persists and switches the desired state; the
// services converge on their own.
func (n *Node) ApplyConfiguration(_ context.Context, req *machine.ApplyConfigurationRequest) (*machine.ApplyConfigurationResponse, error) {
	n.applyMu.Lock()
	defer n.applyMu.Unlock()

	cfg, err := config.Load(req.GetData())
	if err != nil {
		return nil, err
	}
	old := n.desired.Current()
	n.mu.Lock()
	oldBytes := n.cfgBytes
	n.mu.Unlock()

	resp := &machine.ApplyConfigurationResponse{Mode: req.GetMode()}
	if resp.Diff, err = redactedDiff(oldBytes, req.GetData()); err != nil {
		return nil, err
	}
	if old != nil && old.Machine.CA != nil && cfg.Machine.CA != nil && old.Machine.CA.Crt != cfg.Machine.CA.Crt {
		resp.Warnings = append(resp.Warnings, "machine.ca changed: clients need a nodeconfig issued by the new OS CA")
	}

	if n.creds.Maintenance() {
		return n.applyFirst(cfg, req, resp)
	}
	reboot := config.RebootRequired(old, cfg)
	switch req.GetMode() {
	case machine.ApplyMode_STAGED:
		if req.GetDryRun() {
			resp.ModeDetails = "dry run: the config would be staged and applied at the next reboot"
			return resp, nil
		}
		if err := n.store.SaveStaged(req.GetData()); err != nil {
			return nil, err
		}
		resp.ModeDetails = "config staged: it becomes active at the next reboot"
		n.events.Publish(events.ConfigStaged, "config", "config staged for the next reboot", "mode", "staged")
	case machine.ApplyMode_TRY:
		if len(reboot) > 0 {
			return nil, fmt.Errorf("%w: try mode applies changes live, but these fields need a reboot: %s",
				errdefs.ErrFailedPrecondition, strings.Join(reboot, ", "))
		}
		timeout := DefaultTryTimeout
		if req.GetTryTimeout() != nil && req.GetTryTimeout().AsDuration() > 0 {
			timeout = req.GetTryTimeout().AsDuration()
		}
		if req.GetDryRun() {
			resp.ModeDetails = fmt.Sprintf("dry run: the config would be applied live and rolled back after %s unless confirmed", timeout)
			return resp, nil
		}
		if err := n.applyLive(cfg, req.GetData()); err != nil {
			return nil, err
		}
		n.startTry(timeout)
		resp.ModeDetails = fmt.Sprintf("config applied live for %s; apply it again in mode auto or no-reboot to keep it, or it is rolled back", timeout)
	case machine.ApplyMode_NO_REBOOT:
		if len(reboot) > 0 {
			return nil, fmt.Errorf("%w: these fields cannot change without a reboot: %s (use --mode auto or --mode staged)",
				errdefs.ErrFailedPrecondition, strings.Join(reboot, ", "))
		}
		if req.GetDryRun() {
			resp.ModeDetails = "dry run: the config would be applied without a reboot"
			return resp, nil
		}
		if err := n.persistAndApply(cfg, req.GetData()); err != nil {
			return nil, err
		}
		resp.ModeDetails = "config applied without a reboot"
	default: // AUTO
		if req.GetDryRun() {
			resp.ModeDetails = "dry run: the config would be applied without a reboot"
			if len(reboot) > 0 {
				resp.ModeDetails = "dry run: the config would be applied with a reboot (changed: " + strings.Join(reboot, ", ") + ")"
			}
			return resp, nil
		}
		if len(reboot) > 0 {
			n.stopTry()
			if err := n.store.SaveConfig(req.GetData()); err != nil {
				return nil, err
			}
			_ = n.store.DropStaged()
			n.log.Info("config applied; rebooting", "fields", reboot)
			n.events.Publish(events.ConfigApplied, "config", "config applied; rebooting for "+strings.Join(reboot, ", "),
				"mode", "auto", "reboot", strings.Join(reboot, ","))
			n.request(ActionReboot)
			resp.ModeDetails = "config applied; rebooting to apply " + strings.Join(reboot, ", ")
			return resp, nil
		}
		if err := n.persistAndApply(cfg, req.GetData()); err != nil {
			return nil, err
		}
		resp.Mode = machine.ApplyMode_NO_REBOOT
		resp.ModeDetails = "config applied without a reboot"
	}
	return resp, nil
}

// applyFirst handles a config sent to a node in maintenance mode.
func (n *Node) applyFirst(cfg *config.Config, req *machine.ApplyConfigurationRequest, resp *machine.ApplyConfigurationResponse) (*machine.ApplyConfigurationResponse, error) {
	switch req.GetMode() {
	case machine.ApplyMode_TRY, machine.ApplyMode_STAGED:
		return nil, fmt.Errorf("%w: mode %s needs a configured node; this node is in maintenance mode (use auto or no-reboot)",
			errdefs.ErrFailedPrecondition, strings.ToLower(strings.ReplaceAll(req.GetMode().String(), "_", "-")))
	}
	disk, err := n.installTarget(cfg)
	if err != nil {
		return nil, err
	}
	if req.GetDryRun() {
		resp.ModeDetails = "dry run: the node would leave maintenance mode with this config"
		if disk != nil {
			resp.ModeDetails += fmt.Sprintf(" and install to %s (%s)", disk.Path, config.FormatSize(disk.Size))
		}
		return resp, nil
	}
	cert, pool, err := n.serverIdentity(cfg)
	if err != nil {
		return nil, err
	}
	if err := n.store.SaveConfig(req.GetData()); err != nil {
		return nil, err
	}
	n.creds.SetConfigured(cert, pool)
	n.setActive(cfg, req.GetData())
	close(n.configured)
	n.log.Info("machine config applied; left maintenance mode, the API now requires mTLS", "type", cfg.Machine.Type, "cluster", cfg.Cluster.Name)
	n.events.Publish(events.ConfigApplied, "config", "first config applied; left maintenance mode",
		"type", cfg.Machine.Type, "cluster", cfg.Cluster.Name)
	if disk != nil {
		go n.installAndReboot(cfg, *disk)
		resp.Mode = machine.ApplyMode_AUTO
		resp.ModeDetails = fmt.Sprintf("config applied; installing to %s (%s), then rebooting into the installed system", disk.Path, config.FormatSize(disk.Size))
		return resp, nil
	}
	if err := n.startRoleServices(cfg); err != nil {
		n.log.Error("cannot start the role's services", "error", err)
	}
	resp.Mode = machine.ApplyMode_NO_REBOOT
	resp.ModeDetails = "config applied; the node left maintenance mode and now requires a client certificate (use the nodeconfig)"
	return resp, nil
}

func (n *Node) persistAndApply(cfg *config.Config, data []byte) error {
	n.stopTry()
	if err := n.store.SaveConfig(data); err != nil {
		return err
	}
	_ = n.store.DropStaged()
	return n.applyLive(cfg, data)
}

// applyLive switches the running node to cfg without a reboot: the
// controllers that follow live fields (the node-cert service for the API
// certificate's names, etcd for its peers and snapshot schedule) watch the
// desired config and converge on their own.
func (n *Node) applyLive(cfg *config.Config, data []byte) error {
	n.setActive(cfg, data)
	n.log.Info("machine config applied live", "type", cfg.Machine.Type)
	n.events.Publish(events.ConfigApplied, "config", "config applied live", "mode", "live")
	return nil
}

// tryState is one pending TRY config.
type tryState struct {
	timer  clock.Timer
	cancel chan struct{}
}

// startTry arms the rollback of a TRY config to the persisted one.
func (n *Node) startTry(timeout time.Duration) {
	n.stopTry()
	st := &tryState{timer: n.clock.NewTimer(timeout), cancel: make(chan struct{})}
	n.mu.Lock()
	n.try = st
	n.mu.Unlock()
	go func() {
		select {
		case <-st.timer.C():
			n.rollbackTry(st)
		case <-st.cancel:
		}
	}()
}

// stopTry confirms a pending TRY config (or drops it at shutdown).
func (n *Node) stopTry() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.try != nil {
		n.try.timer.Stop()
		close(n.try.cancel)
		n.try = nil
	}
}

func (n *Node) rollbackTry(st *tryState) {
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	n.mu.Lock()
	if n.try != st {
		n.mu.Unlock()
		return
	}
	n.try = nil
	n.mu.Unlock()
	data, err := n.store.Config()
	if err != nil {
		n.log.Error("try mode: cannot read the persisted config to roll back", "error", err)
		return
	}
	cfg, err := config.Load(data)
	if err != nil {
		n.log.Error("try mode: persisted config is invalid; keeping the try config", "error", err)
		return
	}
	if err := n.applyLive(cfg, data); err != nil {
		n.log.Error("try mode: rollback failed", "error", err)
		return
	}
	n.log.Info("try mode: timeout reached, config rolled back to the persisted one")
	n.events.Publish(events.ConfigApplied, "config", "try config timed out; the persisted config is back", "mode", "try", "action", "rolled-back")
}

// redactedDiff is a unified diff of the two configs with secrets hidden.
func redactedDiff(oldData, newData []byte) (string, error) {
	var oldRed []byte
	if oldData != nil {
		c, err := config.Decode(oldData)
		if err != nil {
			return "", err
		}
		if oldRed, err = c.Redact().Bytes(); err != nil {
			return "", err
		}
	}
	c, err := config.Decode(newData)
	if err != nil {
		return "", err
	}
	newRed, err := c.Redact().Bytes()
	if err != nil {
		return "", err
	}
	return config.Diff("current", oldRed, "new", newRed), nil
}
