// Package dashboard is nodectl's terminal dashboard (bubbletea): one row
// per node with its CPU, memory, load, services, etcd role and the VIP,
// and for the selected node its services and a live tail of its machine
// events. It reads through a Source, so the model is tested without nodes
// and nodectl wires it to the machine API.
package dashboard

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ballast-os/ballast/pkg/units"
	tea "github.com/charmbracelet/bubbletea"
)

// Service is one service's state on a node.
type Service struct {
	ID, State string
	// Health is "healthy", "unhealthy: …" or "" (no check).
	Health string
}

// NodeView is what the dashboard shows of one node at one moment.
type NodeView struct {
	Node string
	// Err is why the node could not be read ("" when it was).
	Err string
	// CPUBusy and CPUTotal are the CPU seconds since boot (the model turns
	// two readings into a busy fraction).
	CPUBusy, CPUTotal float64
	CPUs              int
	MemUsed, MemTotal uint64
	Load1             float64
	Services          []Service
	// Etcd is leader, follower, learner or "" (no member here); EtcdDB its
	// database size.
	Etcd   string
	EtcdDB int64
	// VIP is the holder this node sees ("" without a VIP); VIPLocal when it
	// is this node.
	VIP      string
	VIPLocal bool
}

// Source reads the nodes.
type Source interface {
	// Snapshot reads one node now.
	Snapshot(ctx context.Context, node string) NodeView
	// Events follows every node's machine events until ctx ends, calling
	// send with each one's rendered line.
	Events(ctx context.Context, send func(node, line string))
}

// keptEvents is how many event lines the dashboard keeps per node.
const keptEvents = 50

// Model is the dashboard's bubbletea model.
type Model struct {
	ctx      context.Context
	src      Source
	nodes    []string
	interval time.Duration

	views  map[string]NodeView
	cpu    map[string]float64 // busy fraction between the last two readings
	prev   map[string]NodeView
	events map[string][]string
	sel    int
	width  int
	height int
}

// New returns a model of nodes refreshed every interval.
func New(ctx context.Context, src Source, nodes []string, interval time.Duration) Model {
	return Model{ctx: ctx, src: src, nodes: nodes, interval: interval, views: map[string]NodeView{},
		cpu: map[string]float64{}, prev: map[string]NodeView{}, events: map[string][]string{}, width: 120, height: 40}
}

type tickMsg struct{}

// viewMsg is one node's new reading.
type viewMsg NodeView

// EventMsg is one event line of a node (nodectl sends them in).
type EventMsg struct{ Node, Line string }

// Init starts the first reading.
func (m Model) Init() tea.Cmd { return func() tea.Msg { return tickMsg{} } }

// Update handles keys, readings, events and the terminal's size.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch msg.String() {
		case "q", "ctrl+c", "esc":
			return m, tea.Quit
		case "right", "down", "tab", "l", "j":
			m.sel = (m.sel + 1) % len(m.nodes)
		case "left", "up", "shift+tab", "h", "k":
			m.sel = (m.sel + len(m.nodes) - 1) % len(m.nodes)
		}
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case tickMsg:
		cmds := []tea.Cmd{tea.Tick(m.interval, func(time.Time) tea.Msg { return tickMsg{} })}
		for _, n := range m.nodes {
			cmds = append(cmds, func() tea.Msg {
				ctx, cancel := context.WithTimeout(m.ctx, max(m.interval, 2*time.Second))
				defer cancel()
				return viewMsg(m.src.Snapshot(ctx, n))
			})
		}
		return m, tea.Batch(cmds...)
	case viewMsg:
		v := NodeView(msg)
		if p, ok := m.prev[v.Node]; ok && v.Err == "" && v.CPUTotal > p.CPUTotal {
			m.cpu[v.Node] = (v.CPUBusy - p.CPUBusy) / (v.CPUTotal - p.CPUTotal)
		}
		if v.Err == "" {
			m.prev[v.Node] = v
		}
		m.views[v.Node] = v
	case EventMsg:
		ev := append(m.events[msg.Node], msg.Line)
		m.events[msg.Node] = ev[max(0, len(ev)-keptEvents):]
	}
	return m, nil
}

// View draws the table of nodes and the selected node's details.
func (m Model) View() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Ballast dashboard — %d node(s), every %s — ←/→ select a node, q quits\n\n", len(m.nodes), m.interval)
	fmt.Fprintf(&b, "  %-22s %6s %-19s %6s %-12s %-18s %s\n", "NODE", "CPU", "MEMORY", "LOAD", "SERVICES", "ETCD", "VIP")
	for i, n := range m.nodes {
		mark := "  "
		if i == m.sel {
			mark = "> "
		}
		v, ok := m.views[n]
		switch {
		case !ok:
			fmt.Fprintf(&b, "%s%-22s (reading…)\n", mark, n)
		case v.Err != "":
			fmt.Fprintf(&b, "%s%-22s DOWN: %s\n", mark, n, clip(v.Err, m.width-30))
		default:
			cpu := "-"
			if f, ok := m.cpu[n]; ok {
				cpu = fmt.Sprintf("%.0f%%", 100*f)
			}
			up, bad := 0, 0
			for _, s := range v.Services {
				if s.State == "Running" || s.State == "Finished" {
					up++
				}
				if strings.HasPrefix(s.Health, "unhealthy") || s.State == "Failed" || s.State == "BackingOff" {
					bad++
				}
			}
			services := fmt.Sprintf("%d/%d up", up, len(v.Services))
			if bad > 0 {
				services += fmt.Sprintf(" %d!", bad)
			}
			etcd := "-"
			if v.Etcd != "" {
				etcd = fmt.Sprintf("%s %s", v.Etcd, size(uint64(v.EtcdDB)))
			}
			vip := "-"
			if v.VIP != "" {
				vip = v.VIP
				if v.VIPLocal {
					vip += " (here)"
				}
			}
			fmt.Fprintf(&b, "%s%-22s %6s %-19s %6.2f %-12s %-18s %s\n", mark, n, cpu,
				size(v.MemUsed)+" / "+size(v.MemTotal), v.Load1, services, etcd, vip)
		}
	}
	if len(m.nodes) == 0 {
		return b.String()
	}
	sel := m.nodes[m.sel]
	fmt.Fprintf(&b, "\n%s — services\n", sel)
	v := m.views[sel]
	svcs := slices.Clone(v.Services)
	slices.SortFunc(svcs, func(a, c Service) int { return strings.Compare(a.ID, c.ID) })
	for i := 0; i < len(svcs); i += 3 {
		var cols []string
		for _, s := range svcs[i:min(i+3, len(svcs))] {
			st := s.State
			if strings.HasPrefix(s.Health, "unhealthy") {
				st += "!"
			}
			cols = append(cols, fmt.Sprintf("%-26s %-11s", s.ID, st))
		}
		fmt.Fprintf(&b, "  %s\n", strings.Join(cols, " "))
	}
	fmt.Fprintf(&b, "\n%s — events\n", sel)
	ev := m.events[sel]
	room := max(5, m.height-len(m.nodes)-len(svcs)/3-10)
	for _, l := range ev[max(0, len(ev)-room):] {
		fmt.Fprintf(&b, "  %s\n", clip(l, m.width-4))
	}
	return b.String()
}

func clip(s string, n int) string {
	if n > 3 && len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

// size renders bytes with a binary unit.
func size(n uint64) string { return units.Bytes(n) }
