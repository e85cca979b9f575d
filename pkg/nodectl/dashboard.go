package nodectl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/dashboard"
)

func newDashboardCmd(g *globals) *cobra.Command {
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "A live terminal dashboard of the nodes: CPU, memory, load, services, etcd, the VIP, and the selected node's events",
		Long: `Show one row per node (CPU, memory, load, services up, etcd role and
database size, the VIP holder) refreshed every --interval, and for the
selected node its services and a live tail of its machine events.
Keys: ←/→ (or tab, h/l, j/k) select a node, q quits. Needs a terminal.`,
		Example: `  nodectl -n 10.5.0.2,10.5.0.3,10.5.0.4,10.5.0.5 dashboard
  nodectl -n 10.5.0.2 dashboard --interval 2s`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval < 200*time.Millisecond {
				return fmt.Errorf("--interval %s: want at least 200ms", interval)
			}
			src, err := newDashboardSource(cmd, g)
			if err != nil {
				return err
			}
			defer src.close()
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			p := tea.NewProgram(dashboard.New(ctx, src, src.nodes, interval), tea.WithContext(ctx),
				tea.WithAltScreen(), tea.WithOutput(g.stdout))
			go src.Events(ctx, func(node, line string) { p.Send(dashboard.EventMsg{Node: node, Line: line}) })
			if _, err := p.Run(); err != nil && !errors.Is(err, tea.ErrProgramKilled) && ctx.Err() == nil {
				return fmt.Errorf("dashboard: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often each node is read")
	return cmd
}

// dashboardSource reads the nodes over the machine API, one client each.
type dashboardSource struct {
	nodes   []string
	clients map[string]*client.Client
}

func newDashboardSource(cmd *cobra.Command, g *globals) (*dashboardSource, error) {
	nodes, opts, err := g.dialTargets(cmd)
	if err != nil {
		return nil, err
	}
	s := &dashboardSource{nodes: nodes, clients: map[string]*client.Client{}}
	for _, n := range nodes {
		o, err := opts(n)
		if err != nil {
			s.close()
			return nil, err
		}
		c, err := client.New(o)
		if err != nil {
			s.close()
			return nil, err
		}
		s.clients[n] = c
	}
	return s, nil
}

func (s *dashboardSource) close() {
	for _, c := range s.clients {
		_ = c.Close()
	}
}

// Snapshot implements dashboard.Source.
func (s *dashboardSource) Snapshot(ctx context.Context, node string) dashboard.NodeView {
	c := s.clients[node]
	v := dashboard.NodeView{Node: node}
	sys, err := c.SystemStatus(ctx, &machine.SystemStatusRequest{})
	if err != nil {
		v.Err = oneLine(explain(err, node))
		return v
	}
	v.CPUBusy, v.CPUTotal, v.CPUs, v.Load1 = sys.GetCpuBusySeconds(), sys.GetCpuTotalSeconds(), int(sys.GetCpus()), sys.GetLoad1()
	mem := sys.GetMemory()
	v.MemTotal, v.MemUsed = mem.GetTotalBytes(), mem.GetTotalBytes()-min(mem.GetTotalBytes(), mem.GetAvailableBytes())
	if l, err := c.ServiceList(ctx, &machine.ServiceListRequest{}); err == nil {
		for _, si := range l.GetServices() {
			sv := dashboard.Service{ID: si.GetId(), State: si.GetState()}
			if h := si.GetHealth(); h != nil && !h.GetUnknown() {
				sv.Health = "healthy"
				if !h.GetHealthy() {
					sv.Health = "unhealthy: " + h.GetLastMessage()
				}
			}
			v.Services = append(v.Services, sv)
		}
	}
	if vip, err := c.VIPStatus(ctx, &machine.VIPStatusRequest{}); err == nil && vip.GetIp() != "" {
		v.VIP, v.VIPLocal = vip.GetHolder(), vip.GetLocal()
		if v.VIP == "" {
			v.VIP = "unclaimed"
		}
	}
	if slices.ContainsFunc(v.Services, func(s dashboard.Service) bool { return s.ID == "etcd" }) {
		if st, err := machine.NewEtcdServiceClient(c.Conn()).EtcdStatus(ctx, &machine.EtcdStatusRequest{}); err == nil {
			switch {
			case st.GetIsLearner():
				v.Etcd = "learner"
			case st.GetLeader() != 0 && st.GetLeader() == st.GetMemberId():
				v.Etcd = "leader"
			default:
				v.Etcd = "follower"
			}
			v.EtcdDB = st.GetDbSize()
		}
	}
	return v
}

// Events implements dashboard.Source: each node's last events, then new
// ones; a stream that breaks is opened again.
func (s *dashboardSource) Events(ctx context.Context, send func(node, line string)) {
	lineG := &globals{output: "table"}
	for _, n := range s.nodes {
		go func() {
			for ctx.Err() == nil {
				stream, err := s.clients[n].Events(ctx, &machine.EventsRequest{Follow: true, Tail: 20,
					Since: timestamppb.New(time.Now().Add(-time.Hour))})
				if err == nil {
					for {
						ev, err := stream.Recv()
						if err != nil {
							break
						}
						if line, err := lineG.eventLine(n, ev); err == nil {
							send(n, line)
						}
					}
				}
				select {
				case <-ctx.Done():
				case <-time.After(2 * time.Second):
				}
			}
		}()
	}
	<-ctx.Done()
}
