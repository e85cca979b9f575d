package dashboard

import (
	"context"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
)

// fakeSource answers from a table; it is the small interface the model
// reads through.
type fakeSource map[string]NodeView

func (f fakeSource) Snapshot(_ context.Context, node string) NodeView { return f[node] }
func (f fakeSource) Events(context.Context, func(node, line string))  {}

func run(m Model, msgs ...tea.Msg) Model {
	for _, msg := range msgs {
		next, _ := m.Update(msg)
		m = next.(Model)
	}
	return m
}

func TestDashboardRowsSelectionAndUpdates(t *testing.T) {
	cp1 := NodeView{Node: "10.5.0.2", CPUBusy: 100, CPUTotal: 1000, CPUs: 2, MemUsed: 3 << 30, MemTotal: 8 << 30, Load1: 0.5,
		Services: []Service{{ID: "etcd", State: "Running", Health: "healthy"}, {ID: "kubelet", State: "Running"}},
		Etcd:     "leader", EtcdDB: 20 << 20, VIP: "cp1", VIPLocal: true}
	w1 := NodeView{Node: "10.5.0.5", Err: "cannot reach the machine API"}
	m := New(context.Background(), fakeSource{}, []string{"10.5.0.2", "10.5.0.5"}, time.Second)
	m = run(m, viewMsg(cp1), viewMsg(w1))
	out := m.View()
	for _, want := range []string{"> 10.5.0.2", "2/2 up", "leader 20.0 MiB", "cp1 (here)", "3.0 GiB / 8.0 GiB", "10.5.0.5", "DOWN: cannot reach"} {
		if !strings.Contains(out, want) {
			t.Fatalf("view lacks %q:\n%s", want, out)
		}
	}

	// A second reading gives the CPU's busy fraction; a stopped service
	// shows in the row and in the details.
	cp1b := cp1
	cp1b.CPUBusy, cp1b.CPUTotal = 150, 1100
	cp1b.Services = []Service{{ID: "etcd", State: "Running", Health: "healthy"}, {ID: "kubelet", State: "Stopped"}}
	m = run(m, viewMsg(cp1b))
	out = m.View()
	for _, want := range []string{"50%", "1/2 up", "kubelet                    Stopped"} {
		if !strings.Contains(out, want) {
			t.Fatalf("view after the update lacks %q:\n%s", want, out)
		}
	}

	// Events are kept per node; the keys move the selection.
	m = run(m, EventMsg{Node: "10.5.0.5", Line: "vip acquired on w1?"}, EventMsg{Node: "10.5.0.2", Line: "etcd leader is cp1"})
	if out := m.View(); !strings.Contains(out, "etcd leader is cp1") || strings.Contains(out, "vip acquired on w1?") {
		t.Fatalf("the selected node's events only:\n%s", out)
	}
	m = run(m, tea.KeyMsg{Type: tea.KeyRight})
	if out := m.View(); !strings.Contains(out, "> 10.5.0.5") || !strings.Contains(out, "vip acquired on w1?") {
		t.Fatalf("after →, the second node is selected with its events:\n%s", out)
	}
	m = run(m, tea.KeyMsg{Type: tea.KeyRight})
	if !strings.Contains(m.View(), "> 10.5.0.2") {
		t.Fatal("→ on the last node wraps to the first")
	}
	if _, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")}); cmd == nil {
		t.Fatal("q does not quit")
	}
}

func TestDashboardKeepsTheLastEvents(t *testing.T) {
	m := New(context.Background(), fakeSource{}, []string{"n"}, time.Second)
	for i := range keptEvents + 10 {
		m = run(m, EventMsg{Node: "n", Line: strings.Repeat("x", i)})
	}
	if len(m.events["n"]) != keptEvents {
		t.Fatalf("%d events kept, want %d", len(m.events["n"]), keptEvents)
	}
}

func TestTickReadsEveryNode(t *testing.T) {
	src := fakeSource{"a": {Node: "a"}, "b": {Node: "b"}}
	m := New(context.Background(), src, []string{"a", "b"}, time.Hour)
	_, cmd := m.Update(tickMsg{})
	batch, ok := cmd().(tea.BatchMsg)
	if !ok || len(batch) != 3 { // the next tick and one read per node
		t.Fatalf("tick: %T %v", cmd(), batch)
	}
	seen := map[string]bool{}
	for _, c := range batch[1:] {
		if v, ok := c().(viewMsg); ok {
			seen[v.Node] = true
		}
	}
	if !seen["a"] || !seen["b"] {
		t.Fatalf("read %v, want a and b", seen)
	}
}
