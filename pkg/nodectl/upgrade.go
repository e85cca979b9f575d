package nodectl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/bundle"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/health"
)

// chunkSize is how much of a part one UpgradeChunk carries.
const chunkSize = 1 << 20

// upgradeFlags are what upgrade and rollback share.
type upgradeFlags struct {
	stage         bool
	healthTimeout time.Duration
	wait          bool
}

func (f *upgradeFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.stage, "stage", false, "write the switch and boot it at the next reboot instead of now")
	f.addGate(cmd)
	cmd.Flags().BoolVar(&f.wait, "wait", true, "wait for the health gate's verdict and report it")
}

// addGate adds only --health-timeout: a rolling upgrade always waits for
// each node's gate and never stages.
func (f *upgradeFlags) addGate(cmd *cobra.Command) {
	f.wait = true
	cmd.Flags().DurationVar(&f.healthTimeout, "health-timeout", 5*time.Minute, "how long the new system may take to pass its health gate (services Running, etcd member caught up, kubelet Ready) before the node falls back")
}

func newUpgradeCmd(g *globals) *cobra.Command {
	var (
		src     string
		force   bool
		rolling bool
		f       upgradeFlags
		r       rolloutFlags
	)
	cmd := &cobra.Command{
		Use:   "upgrade --bundle DIR|URL",
		Short: "Install an upgrade bundle into each node's inactive slot and boot it, with automatic rollback",
		Long: `Install an upgrade bundle (make images writes one to _out/bundle) into the
inactive system slot of each node, one node after the other, and boot it once.
The node checks the bundle's manifest (architecture, not older than the
running build unless --force) and every part's SHA-256 before it switches;
a refusal leaves both slots as they were. Before rebooting, a control plane
hands etcd leadership and the VIP to the others. The new system becomes the
default only when it passes its health gate within --health-timeout;
otherwise (or if it crashes) the node boots the previous slot by itself and
this command reports why. See docs/upgrades.md.

A machine installed to disk takes the kernel, the initramfs and the
component images into its BOOT-A or BOOT-B partition (GRUB tries it once);
a container-mode node (netns cluster) takes the agent and the image
archives. Parts a node already holds with the same SHA-256 are not sent.

With --rolling the nodes are upgraded as 'nodectl cluster upgrade' does
(quorum and health checked before each, drained, uncordoned after), in its
order: control planes one at a time, then workers; the role of each is read
from its config.`,
		Example: `  nodectl -n 10.5.0.2 upgrade --bundle _out/bundle
  nodectl -n 10.5.0.2,10.5.0.3 upgrade --bundle http://10.5.0.1:8080/bundle --health-timeout 2m
  nodectl -n 10.5.0.2 upgrade --bundle _out/bundle --stage   # switch at the next reboot
  nodectl -n 10.5.0.2,10.5.0.3,10.5.0.4 upgrade --bundle _out/bundle --rolling --dry-run`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if src == "" {
				return errBundleRequired
			}
			if rolling {
				return g.rollingUpgrade(cmd, src, force, f, r)
			}
			if r.dryRun {
				return errors.New("--dry-run plans a rolling upgrade: add --rolling")
			}
			b, err := bundle.Open(cmd.Context(), src)
			if err != nil {
				return err
			}
			return eachNode(cmd, g, func(ctx context.Context, node string, dial func() (*client.Client, error)) error {
				return upgradeNode(ctx, g, node, dial, b, force, f)
			})
		},
	}
	cmd.Flags().StringVar(&src, "bundle", "", "the bundle: a directory holding manifest.json, or an http(s) URL of one")
	cmd.Flags().BoolVar(&force, "force", false, "install a build older than the running one")
	cmd.Flags().BoolVar(&rolling, "rolling", false, "upgrade the nodes as a rolling upgrade of their cluster (see 'nodectl cluster upgrade')")
	f.add(cmd)
	r.add(cmd)
	return cmd
}

// rollingUpgrade is upgrade --rolling: the targets, each with the role its
// config names, rolled as cluster upgrade rolls a cluster.
func (g *globals) rollingUpgrade(cmd *cobra.Command, src string, force bool, f upgradeFlags, r rolloutFlags) error {
	nctx, err := g.loadContext()
	if err != nil {
		return err
	}
	targets, err := g.targets(nctx)
	if err != nil {
		return err
	}
	dial := health.ContextDialer(nctx)
	var nodes []health.Node
	for _, a := range targets {
		role, err := nodeRole(cmd.Context(), dial, a)
		if err != nil {
			return fmt.Errorf("%s: %s", a, oneLine(explain(err, a)))
		}
		nodes = append(nodes, health.Node{Address: a, Role: role})
	}
	return g.rollout(cmd, src, force, nodes, dial, f, r)
}

func newRollbackCmd(g *globals) *cobra.Command {
	var f upgradeFlags
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Boot each node's other system slot (the previous build), under the same health gate",
		Long: `Boot the other system slot of each node, one node after the other: the
build that ran before the last upgrade. While a node still tries a new
slot, rollback ends the try and the node returns to its active slot.`,
		Example: `  nodectl -n 10.5.0.2 rollback
  nodectl -n 10.5.0.2 rollback --stage`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return eachNode(cmd, g, func(ctx context.Context, node string, dial func() (*client.Client, error)) error {
				c, err := dial()
				if err != nil {
					return err
				}
				started := time.Now()
				resp, err := c.Rollback(ctx, &machine.RollbackRequest{Stage: f.stage, HealthTimeout: durationpb.New(f.healthTimeout)})
				c.Close()
				if err != nil {
					return err
				}
				return f.report(ctx, g, node, dial, "rollback", resp.GetSlot(), resp.GetVersion(), resp.GetRebooting(), started)
			})
		},
	}
	f.add(cmd)
	return cmd
}

// upgradeNode sends the bundle to one node and, unless told not to, waits
// for its health gate's verdict.
func upgradeNode(ctx context.Context, g *globals, node string, dial func() (*client.Client, error), b *bundle.Opened, force bool, f upgradeFlags) error {
	c, err := dial()
	if err != nil {
		return err
	}
	started := time.Now()
	resp, err := sendBundle(ctx, c, b, &machine.UpgradeStart{Force: force, Stage: f.stage, HealthTimeout: durationpb.New(f.healthTimeout)})
	c.Close()
	if err != nil {
		return err
	}
	return f.report(ctx, g, node, dial, "upgrade", resp.GetSlot(), resp.GetVersion(), resp.GetRebooting(), started)
}

// eachNode runs fn for the targets one after the other (an upgrade reboots
// the node: never two at once), stopping at the first failure.
func eachNode(cmd *cobra.Command, g *globals, fn func(ctx context.Context, node string, dial func() (*client.Client, error)) error) error {
	nctx, err := g.loadContext()
	if err != nil {
		return err
	}
	nodes, err := g.targets(nctx)
	if err != nil {
		return err
	}
	for i, node := range nodes {
		dial := func() (*client.Client, error) {
			o, err := client.FromContext(nctx, node)
			if err != nil {
				return nil, err
			}
			return client.New(o)
		}
		if err := fn(cmd.Context(), node, dial); err != nil {
			if left := nodes[i+1:]; len(left) > 0 {
				fmt.Fprintf(g.stderr, "stopped: %s not changed\n", strings.Join(left, ", "))
			}
			return fmt.Errorf("%s: %s", node, oneLine(explain(err, node)))
		}
	}
	return nil
}

// report waits, unless told not to, for the node's verdict on the switch
// it just scheduled.
func (f *upgradeFlags) report(ctx context.Context, g *globals, node string, dial func() (*client.Client, error), kind, slot, ver string, rebooting bool, started time.Time) error {
	if !rebooting {
		fmt.Fprintf(g.stdout, "%s: slot %s (%s) written; it boots at the next reboot\n", node, slot, ver)
		return nil
	}
	if !f.wait {
		fmt.Fprintf(g.stdout, "%s: rebooting into slot %s (%s)\n", node, slot, ver)
		return nil
	}
	fmt.Fprintf(g.stdout, "%s: rebooting into slot %s (%s); waiting for its health gate (up to %s)\n", node, slot, ver, f.healthTimeout)
	// The gate's clock starts when the new agent does; allow for the
	// reboot itself.
	deadline := time.Now().Add(f.healthTimeout + 2*time.Minute)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		st, err := slotStatus(ctx, dial)
		if err != nil {
			last = err
			continue
		}
		a := st.GetLast()
		if a.GetKind() != kind || a.GetTo() != slot || a.GetStarted().AsTime().Before(started.Add(-time.Minute)) {
			last = fmt.Errorf("the node does not show the %s yet", kind)
			continue
		}
		switch a.GetResult() {
		case "succeeded":
			fmt.Fprintf(g.stdout, "%s: %s to %s done: slot %s is active (%s after the command)\n", node, kind, ver, slot, time.Since(started).Round(100*time.Millisecond))
			return nil
		case "failed":
			back := st.GetActive()
			return fmt.Errorf("%w: %s to %s failed: %s; the node is back on slot %s (%s)", ErrUpgradeFailed, kind, ver, a.GetReason(), back, slotVersion(st, back))
		}
		last = fmt.Errorf("slot %s still tries its health gate", slot)
	}
	return fmt.Errorf("no verdict from the node within %s: %v", f.healthTimeout+2*time.Minute, last)
}

// ErrUpgradeFailed is returned when a node fell back from a new slot.
var ErrUpgradeFailed = errors.New("upgrade failed")

func slotStatus(ctx context.Context, dial func() (*client.Client, error)) (*machine.UpgradeStatusResponse, error) {
	c, err := dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.UpgradeStatus(cctx, &machine.UpgradeStatusRequest{})
}

func slotVersion(st *machine.UpgradeStatusResponse, slot string) string {
	for _, s := range st.GetSlots() {
		if s.GetName() == slot && s.GetVersion() != "" {
			return s.GetVersion()
		}
	}
	return "its previous build"
}

// sendBundle streams the parts the node asks for and returns its answer.
// start is the request's options; its manifest is b's.
func sendBundle(ctx context.Context, c *client.Client, b *bundle.Opened, start *machine.UpgradeStart) (*machine.UpgradeResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Upgrade(ctx)
	if err != nil {
		return nil, err
	}
	start.Manifest = b.Data
	if err := stream.Send(&machine.UpgradeRequest{Msg: &machine.UpgradeRequest_Start{Start: start}}); err != nil {
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, chunkSize)
	for _, name := range first.GetWanted() {
		if err := sendPart(ctx, stream, b, name, buf); err != nil {
			// The node's reason, when it refused, beats our EOF.
			if _, rerr := stream.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
				return nil, rerr
			}
			return nil, err
		}
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	return stream.Recv()
}

func sendPart(ctx context.Context, stream machine.MachineService_UpgradeClient, b *bundle.Opened, name string, buf []byte) error {
	r, err := b.OpenPart(ctx, name)
	if err != nil {
		return fmt.Errorf("bundle part %s: %w", name, err)
	}
	defer r.Close()
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if serr := stream.Send(&machine.UpgradeRequest{Msg: &machine.UpgradeRequest_Chunk{Chunk: &machine.UpgradeChunk{Part: name, Data: buf[:n]}}}); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read bundle part %s: %w", name, err)
		}
	}
}

func newGetSlotsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "slots",
		Short:   "Show each node's system slots, the build in each, and the last upgrade or rollback",
		Example: "  nodectl -n 10.5.0.2 get slots",
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (*machine.UpgradeStatusResponse, error) {
				return c.UpgradeStatus(ctx, &machine.UpgradeStatusRequest{})
			})
			if err != nil {
				return err
			}
			first := true
			return render(g, results, func(node string, st *machine.UpgradeStatusResponse) {
				if first {
					fmt.Fprintf(g.stdout, "%-16s %-4s %-28s %-24s %s\n", "NODE", "SLOT", "STATE", "VERSION", "WRITTEN")
					first = false
				}
				for _, s := range st.GetSlots() {
					var state []string
					if s.GetName() == st.GetSlot() {
						state = append(state, "booted")
					}
					if s.GetName() == st.GetActive() {
						state = append(state, "active")
					}
					if s.GetName() == st.GetNext() {
						state = append(state, "next")
					}
					if s.GetName() == st.GetSlot() && st.GetTrying() {
						state = append(state, "trying")
					}
					written := "-"
					if s.GetWritten() != nil {
						written = s.GetWritten().AsTime().UTC().Format(time.RFC3339)
					} else if s.GetMedium() {
						written = "(boot medium)"
					}
					v := s.GetVersion()
					if v == "" {
						v = "-"
					}
					fmt.Fprintf(g.stdout, "%-16s %-4s %-28s %-24s %s\n", node, s.GetName(), strings.Join(state, ","), v, written)
				}
				if a := st.GetLast(); a != nil {
					line := fmt.Sprintf("%s: last %s %s→%s (%s) %s", node, a.GetKind(), a.GetFrom(), a.GetTo(), a.GetVersion(), a.GetResult())
					if a.GetReason() != "" {
						line += ": " + a.GetReason()
					}
					fmt.Fprintln(g.stdout, line)
				}
			})
		},
	}
}
