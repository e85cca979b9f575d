package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/platform"
	"github.com/ballast-os/ballast/pkg/config"
)

// bootConfigService reads the config the kernel command line points at
// (metal mode, maintenance mode only) and applies it as apply-config would.
const bootConfigService = "boot-config"

// runBootConfig tries the source until a valid config is applied, the node
// is configured another way (the API), or ctx ends. Every failed attempt
// and its reason is logged (the agent's log is on the console); the node
// stays in maintenance mode meanwhile.
func (n *Node) runBootConfig(ctx context.Context, out io.Writer) error {
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("kernel command line: %w", err)
	}
	src, err := platform.FromCmdline(string(cmdline))
	if errors.Is(err, platform.ErrNoSource) {
		fmt.Fprintln(out, "no ballast.config or ballast.platform=nocloud on the kernel command line: waiting for apply-config")
		n.announceAddress(ctx)
		return nil
	}
	// The API takes a config meanwhile: say how.
	go n.announceAddress(ctx)
	if err != nil {
		n.log.Error("boot config: the node stays in maintenance mode", "error", err)
		return nil
	}
	for attempt := 0; ; attempt++ {
		applied, err := n.applyBootConfig(ctx, src)
		if applied {
			fmt.Fprintf(out, "config from %s applied\n", src)
			return nil
		}
		select {
		case <-n.configured:
			fmt.Fprintln(out, "configured through the API; boot config no longer read")
			return nil
		default:
		}
		wait := platform.Backoff(attempt)
		n.log.Warn("boot config: staying in maintenance mode", "source", src.String(), "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-n.configured:
			return nil
		case <-time.After(wait):
		}
	}
}

// applyBootConfig reads the source once and applies its config if the node
// is still in maintenance mode.
func (n *Node) applyBootConfig(ctx context.Context, src platform.Source) (bool, error) {
	data, err := src.Read(ctx)
	if err != nil {
		return false, err
	}
	cfg, err := config.Load(data)
	if err != nil {
		return false, fmt.Errorf("config from %s is invalid: %w", src, err)
	}
	// Under the apply lock, and only in maintenance mode: a config applied
	// through the API meanwhile wins over the boot config.
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	if !n.creds.Maintenance() {
		return false, nil
	}
	if _, err := n.applyFirst(cfg, &machine.ApplyConfigurationRequest{Data: data, Mode: machine.ApplyMode_AUTO}, &machine.ApplyConfigurationResponse{}); err != nil {
		return false, err
	}
	return true, nil
}

// announceAddress prints the apply-config line again with the machine's
// first global address once it has one (DHCP comes after the API listens).
func (n *Node) announceAddress(ctx context.Context) {
	for {
		if ip := globalAddress(nil); ip != "" {
			n.printApplyLine(ip)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-n.configured:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}
