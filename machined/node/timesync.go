package node

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/timesync"
)

// timeService keeps the clock (NTP).
const timeService = "timesync"

// timeServers are the NTP servers to ask now: machine.time.servers, else
// (on metal) the DHCP leases', else timesync.DefaultServers. Container mode
// asks only configured servers: the clock is the host's, and a test network
// must not reach out. None when machine.time.disabled.
func (n *Node) timeServers() []string {
	cfg := n.desired.Current()
	if cfg == nil || cfg.Machine.Time.Disabled {
		return nil
	}
	if s := cfg.Machine.Time.Servers; len(s) > 0 {
		return s
	}
	if n.opts.Mode != ModeMetal {
		return nil
	}
	if s := n.network.DHCPNTPServers(); len(s) > 0 {
		return s
	}
	return timesync.DefaultServers
}

// clockStepped re-issues a control plane's machine-API certificate after a
// large step: the one minted at boot carries the clock as it was (1970 on a
// dead RTC) and would not be valid now.
func (n *Node) clockStepped(offset time.Duration) {
	if offset > -time.Minute && offset < time.Minute {
		return
	}
	cfg := n.desired.Current()
	if cfg == nil || !cfg.IsControlPlane() {
		return
	}
	cert, pool, err := n.serverIdentity(cfg)
	if err != nil {
		n.log.Error("cannot issue the machine-API certificate again after the clock step", "error", err)
		return
	}
	n.creds.SetConfigured(cert, pool)
	n.log.Info("machine-API certificate issued again after the clock step", "offset", offset.String())
}

// TimeStatus implements server.Machine.
func (n *Node) TimeStatus() *machine.TimeStatusResponse {
	st := n.timesync.Status()
	r := &machine.TimeStatusResponse{
		Synced: st.Synced, Server: st.Server, Offset: durationpb.New(st.Offset), Rtt: durationpb.New(st.RTT),
		Stepped: durationpb.New(st.Stepped), SetsClock: st.SetsClock, Error: st.Error, Servers: st.Servers,
		Now: timestamppb.New(time.Now()),
	}
	if !st.LastSync.IsZero() {
		r.LastSync = timestamppb.New(st.LastSync)
	}
	return r
}
