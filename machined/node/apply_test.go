package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/errdefs"
	"github.com/ballast-os/ballast/machined/state"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/gen"
	"github.com/ballast-os/ballast/pkg/secrets"
)

// testNode returns a node in maintenance mode (not running its services)
// with a fake clock, and a generated control-plane config.
func testNode(t *testing.T) (*Node, *clock.Fake, []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	clk := clock.NewFake(time.Unix(0, 0))
	n, err := New(Options{Mode: ModeContainer, StateDir: t.TempDir(), Listener: ln, Clock: clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.loadPersisted(); err != nil {
		t.Fatal(err)
	}
	b, err := secrets.Generate()
	if err != nil {
		t.Fatal(err)
	}
	out, err := gen.Generate(gen.Options{ClusterName: "unit", Endpoint: "https://10.0.0.1:6443", Secrets: b})
	if err != nil {
		t.Fatal(err)
	}
	return n, clk, out.ControlPlane
}

func patch(t *testing.T, data []byte, p string) []byte {
	t.Helper()
	out, err := config.ApplyPatches(data, []string{p})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func apply(n *Node, data []byte, mode machine.ApplyMode, dry bool) (*machine.ApplyConfigurationResponse, error) {
	return n.ApplyConfiguration(context.Background(), &machine.ApplyConfigurationRequest{Data: data, Mode: mode, DryRun: dry})
}

func activeHostname(n *Node) string {
	cfg, _ := n.Config()
	if cfg == nil {
		return "<none>"
	}
	return cfg.Machine.Network.Hostname
}

func TestMaintenanceApply(t *testing.T) {
	n, _, cp := testNode(t)
	for _, mode := range []machine.ApplyMode{machine.ApplyMode_TRY, machine.ApplyMode_STAGED} {
		if _, err := apply(n, cp, mode, false); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("mode %s in maintenance: %v, want ErrFailedPrecondition", mode, err)
		}
	}
	if _, err := apply(n, []byte("version: v1alpha1\nmachine:\n  type: bogus\n"), machine.ApplyMode_AUTO, false); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("invalid config: %v, want ErrInvalid", err)
	}
	resp, err := apply(n, cp, machine.ApplyMode_AUTO, true)
	if err != nil || resp.GetDiff() == "" {
		t.Fatalf("dry run: %v, diff %q", err, resp.GetDiff())
	}
	if _, err := n.store.Config(); !errors.Is(err, state.ErrNoConfig) || !n.creds.Maintenance() {
		t.Fatal("dry run changed the node")
	}
	if _, err := apply(n, cp, machine.ApplyMode_AUTO, false); err != nil {
		t.Fatal(err)
	}
	if n.creds.Maintenance() {
		t.Fatal("still in maintenance mode after a valid config")
	}
	select {
	case <-n.configured:
	default:
		t.Fatal("configured channel not closed")
	}
	if got, _ := n.store.Config(); string(got) != string(cp) {
		t.Fatal("config not persisted byte for byte")
	}
}

func TestConfiguredApplyModes(t *testing.T) {
	n, clk, cp := testNode(t)
	if _, err := apply(n, cp, machine.ApplyMode_AUTO, false); err != nil {
		t.Fatal(err)
	}

	renamed := patch(t, cp, `{"cluster":{"name":"other"}}`)
	if _, err := apply(n, renamed, machine.ApplyMode_NO_REBOOT, false); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("no-reboot with a reboot-only change: %v", err)
	}
	if _, err := apply(n, renamed, machine.ApplyMode_TRY, false); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("try with a reboot-only change: %v", err)
	}

	staged := patch(t, cp, `{"machine":{"network":{"hostname":"staged"}}}`)
	if _, err := apply(n, staged, machine.ApplyMode_STAGED, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := n.store.Staged(); string(got) != string(staged) || activeHostname(n) == "staged" {
		t.Fatal("staged config not stored aside")
	}

	// try, then roll back when the timer fires.
	trial := patch(t, cp, `{"machine":{"network":{"hostname":"trial"}}}`)
	_, err := n.ApplyConfiguration(context.Background(), &machine.ApplyConfigurationRequest{Data: trial, Mode: machine.ApplyMode_TRY, TryTimeout: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if activeHostname(n) != "trial" {
		t.Fatalf("try config not active: %q", activeHostname(n))
	}
	if got, _ := n.store.Config(); string(got) != string(cp) {
		t.Fatal("try config was persisted")
	}
	_, changed := n.Config()
	clk.BlockUntil(1)
	clk.Advance(time.Minute)
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("try config not rolled back 10s after its timeout")
	}
	if activeHostname(n) != "" {
		t.Fatalf("try config not rolled back: %q", activeHostname(n))
	}

	// try, then confirm: the timer must not roll back a confirmed config.
	if _, err := apply(n, trial, machine.ApplyMode_TRY, false); err != nil {
		t.Fatal(err)
	}
	if _, err := apply(n, trial, machine.ApplyMode_NO_REBOOT, false); err != nil {
		t.Fatal(err)
	}
	if p := clk.Pending(); p != 0 {
		t.Fatalf("%d timers still armed after the try config was confirmed", p)
	}
	clk.Advance(2 * DefaultTryTimeout)
	if activeHostname(n) != "trial" {
		t.Fatalf("confirmed config rolled back: %q", activeHostname(n))
	}

	// auto with a reboot-only change persists and asks for a reboot.
	if _, err := apply(n, renamed, machine.ApplyMode_AUTO, false); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-n.actions:
		if a != ActionReboot {
			t.Fatalf("action %v, want reboot", a)
		}
	default:
		t.Fatal("no reboot requested")
	}
	if got, _ := n.store.Config(); string(got) != string(renamed) {
		t.Fatal("auto apply did not persist")
	}
}
