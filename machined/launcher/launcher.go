// Package launcher is a container-mode node's boot loader. machined started
// with --mode container does not run the agent itself: it runs the agent of
// the slot to boot (package slots) as its child and takes the child's end as
// the end of a boot, as PID 1 and GRUB do for a machine:
//
//   - exit 0: the node shut down; the launcher exits.
//   - exit ExitReboot: a reboot; the next boot starts (the tried slot once
//     when an upgrade set one, else the active slot).
//   - any other end (a crash, a signal) of a tried slot: the try failed with
//     that reason, and the next boot is the active slot at once; of the
//     active slot: the node "reboots" after a delay, as a machine whose
//     agent fails does.
//
// The launcher stays the build the node was started with — like a
// bootloader, it is not replaced by an upgrade — and is small: it reads the
// record, starts a process and waits. SIGTERM and SIGINT are passed to the
// agent, which stops its services in order; if the launcher is killed, the
// kernel kills the agent too (parent-death signal), so a SIGKILL to the
// node's PID is still a power cut of the whole node.
package launcher

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/ballast-os/ballast/machined/slots"
)

// Environment the launcher gives the agent.
const (
	// EnvAgent marks the process as the agent (not a launcher).
	EnvAgent = "BALLAST_AGENT"
	// EnvSlot names the slot the agent was booted from.
	EnvSlot = "BALLAST_SLOT"
	// EnvTrying is "1" when this boot tries the slot once.
	EnvTrying = "BALLAST_SLOT_TRYING"
)

// ExitReboot is the agent's exit code asking for a reboot (the same code
// PID 1 uses on a machine).
const ExitReboot = 10

// Options configure the launcher.
type Options struct {
	// Root is the node's state directory (the slots are in slots.Dir(Root)).
	Root string
	// Machined and ImagesDir are the boot medium's agent and image
	// archives: slot A until an upgrade writes it.
	Machined  string
	ImagesDir string
	// Args are the agent's command-line flags (the launcher's own).
	Args   []string
	Logger *slog.Logger
	// Stdout and Stderr receive the agent's output.
	Stdout, Stderr io.Writer
	// FailureDelay is how long a failed boot of the active slot waits
	// before the next (default 2 s).
	FailureDelay time.Duration
}

// Run boots the node's agent until it shuts down or ctx ends (then the
// agent is stopped with SIGTERM and awaited).
func Run(ctx context.Context, o Options) error {
	if o.FailureDelay == 0 {
		o.FailureDelay = 2 * time.Second
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	for {
		end, err := o.boot(ctx, sigs)
		if err != nil {
			return err
		}
		switch end {
		case endShutdown:
			return nil
		case endFailed:
			select {
			case <-ctx.Done():
				return nil
			case <-sigs:
				return nil
			case <-time.After(o.FailureDelay):
			}
		}
	}
}

type end int

const (
	endShutdown end = iota
	endReboot
	endFailed // the active slot's agent failed
)

func (o Options) recordPath() string { return filepath.Join(slots.Dir(o.Root), slots.FileName) }

// boot runs one boot: it picks the slot, starts its agent and waits for it.
func (o Options) boot(ctx context.Context, sigs <-chan os.Signal) (end, error) {
	path := o.recordPath()
	st, err := slots.Load(path)
	if err != nil {
		o.Logger.Error("slots record unreadable: booting slot A", "error", err)
		st = &slots.State{Active: slots.A}
	}
	// Only a boot that consumes or settles a try changes the record.
	pending := st.Next != "" || st.Trying != ""
	slot, trying := st.Boot(time.Now())
	if pending {
		if err := slots.Save(path, st); err != nil && trying {
			// Never start a try the record does not show: a crash of it
			// would then be booted again.
			o.Logger.Error("cannot record the try: booting the active slot", "slot", slot, "error", err)
			slot, trying = st.Active, false
		} else if err != nil {
			o.Logger.Warn("cannot save the slots record", "error", err)
		}
	}
	bin, images, err := o.files(slot)
	var ws syscall.WaitStatus
	stopped := false
	if err == nil {
		o.Logger.Info("booting", "slot", slot, "trying", trying, "agent", bin)
		ws, stopped, err = o.run(ctx, sigs, bin, images, slot, trying)
	}
	if err != nil {
		if trying {
			o.failTry(slot, fmt.Sprintf("the new system's agent could not start: %v", err))
			return endReboot, nil
		}
		return endShutdown, fmt.Errorf("start the agent of slot %s: %w", slot, err)
	}
	switch {
	case stopped:
		return endShutdown, nil
	case ws.Exited() && ws.ExitStatus() == 0:
		o.Logger.Info("the agent shut down", "slot", slot)
		return endShutdown, nil
	case ws.Exited() && ws.ExitStatus() == ExitReboot:
		if trying {
			o.failTry(slot, "the new system rebooted before it passed the health gate")
		}
		o.Logger.Info("reboot", "slot", slot)
		return endReboot, nil
	}
	reason := describe(ws)
	if trying {
		o.failTry(slot, "the new system's agent failed: "+reason)
		return endReboot, nil
	}
	o.Logger.Error("the agent failed; booting again", "slot", slot, "reason", reason, "delay", o.FailureDelay)
	return endFailed, nil
}

// failTry records a try that ended without passing the gate, unless the
// agent already settled it.
func (o Options) failTry(slot, reason string) {
	path := o.recordPath()
	st, err := slots.Load(path)
	if err != nil || st.Trying != slot {
		return
	}
	st.Fail(time.Now(), reason)
	o.Logger.Error("upgrade failed: back to the active slot", "tried", slot, "active", st.Active, "reason", reason)
	if err := slots.Save(path, st); err != nil {
		o.Logger.Error("cannot save the slots record", "error", err)
	}
}

// files returns slot's agent and image directory: the slot's own when it
// was written, else (slot A only) the boot medium's.
func (o Options) files(slot string) (bin, images string, err error) {
	dir := filepath.Join(slots.Dir(o.Root), slot)
	if _, err := os.Stat(filepath.Join(dir, "machined")); err == nil {
		return filepath.Join(dir, "machined"), dir, nil
	}
	if slot == slots.A {
		return o.Machined, o.ImagesDir, nil
	}
	return "", "", fmt.Errorf("slot %s holds no agent", slot)
}

// run starts the agent and waits for it, passing SIGTERM/SIGINT on; stopped
// is true when it ended because the launcher was told to stop.
func (o Options) run(ctx context.Context, sigs <-chan os.Signal, bin, images, slot string, trying bool) (syscall.WaitStatus, bool, error) {
	args := append(append([]string{}, o.Args...), "--images-dir", images)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = o.Stdout, o.Stderr
	// The medium's directory first in PATH: containerd, its shim and the
	// kubelet are found there whichever slot's agent runs.
	env := []string{EnvAgent + "=1", EnvSlot + "=" + slot, "PATH=" + filepath.Dir(o.Machined) + ":" + os.Getenv("PATH")}
	if trying {
		env = append(env, EnvTrying+"=1")
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "BALLAST_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	// The parent-death signal follows the thread that started the child:
	// keep this goroutine on it until the child is gone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 0, false, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	for {
		select {
		case err := <-done:
			var ws syscall.WaitStatus
			if cmd.ProcessState != nil {
				ws, _ = cmd.ProcessState.Sys().(syscall.WaitStatus)
			} else if err != nil {
				return 0, stopped, err
			}
			return ws, stopped, nil
		case sig := <-sigs:
			stopped = true
			_ = cmd.Process.Signal(sig)
		case <-ctx.Done():
			if !stopped {
				stopped = true
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}
			ctx = context.Background() // Done fires once
		}
	}
}

func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by signal " + ws.Signal().String()
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}

// IsAgent reports whether this process is an agent started by a launcher.
func IsAgent() bool { return os.Getenv(EnvAgent) != "" }

// Slot returns the slot the launcher booted this agent from, and whether
// this boot tries it ("" when the process was not started by a launcher).
func Slot() (slot string, trying bool) {
	return os.Getenv(EnvSlot), os.Getenv(EnvTrying) == "1"
}
