// Package pid1 carries out machined's duties as the init process of a
// Ballast machine (metal mode): it mounts the pseudo filesystems and the
// node's writable areas, loads the kernel modules the hardware needs, starts
// the agent as its only child, reaps every orphan, and on reboot, power-off
// or Ctrl-Alt-Del stops all processes, syncs, unmounts and calls reboot(2).
//
// PID 1 stays small on purpose: the agent runs as a child process
// (`/init --mode metal`), so the reaper's wait4(-1) never races the agent's
// own waits for the processes it supervises, and an agent that crashes is
// logged and the machine rebooted instead of a kernel panic.
package pid1

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/machined/kmod"
	"github.com/ballast-os/ballast/machined/platform"
)

// Exit codes the agent (the child) uses to tell PID 1 what to do.
const (
	ExitPowerOff = 0  // stopped on request or by a signal: power off
	ExitReboot   = 10 // reboot requested
)

// Root is where the node's writable areas are mounted: STATE at
// Root/state and EPHEMERAL at Root/var (the agent's --state-dir).
const Root = "/system"

// failureDelay is how long a failed boot stays on the console before the
// machine reboots.
const failureDelay = 10 * time.Second

// Main is the init process. It never returns.
func Main() {
	console := openConsole()
	log := newLogger(console)
	leaveInitramfs(log)
	log.Printf("ballast init starting (uptime %s)", uptime())
	ix, err := boot(log)
	if err != nil {
		log.Printf("boot failed: %v; rebooting in %s", err, failureDelay)
		time.Sleep(failureDelay)
		finish(log, unix.LINUX_REBOOT_CMD_RESTART)
	}
	finish(log, supervise(log, func() { loadLater(log, ix) }))
}

// boot prepares the machine: pseudo filesystems, the devices' modules,
// disks, read-only root. It returns the module index for the modules loaded
// later.
func boot(log *logger) (*kmod.Index, error) {
	if err := mountPseudo(); err != nil {
		return nil, err
	}
	log.attachKmsg()
	// Ctrl-Alt-Del sends SIGINT to PID 1 instead of an immediate reset.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
	if err := os.WriteFile("/proc/sys/kernel/printk_devkmsg", []byte("on\n"), 0o644); err != nil {
		log.Printf("kmsg rate limit left on: %v", err)
	}
	ix := loadModules(log)
	if err := mountSystem(log); err != nil {
		return nil, err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		log.Printf("root filesystem stays writable: %v", err)
	} else {
		log.Printf("root filesystem read-only; writable: %s, /run, /tmp", Root)
	}
	return ix, nil
}

// supervise runs the agent (then, meanwhile, background) and reaps orphans
// until the agent exits, and returns the reboot(2) command the machine ends
// with.
func supervise(log *logger, background func()) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGINT, unix.SIGTERM, unix.SIGPWR)
	cmd := exec.Command("/init", agentArgs()...)
	cmd.Env = []string{"PATH=/usr/bin:/usr/sbin:/bin:/sbin", "HOME=/system/state", "BALLAST_PID1=1"}
	out := log.out()
	cmd.Stdout, cmd.Stderr = out, out // one pipe for both
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		log.Printf("cannot start the agent: %v; rebooting in %s", err, failureDelay)
		time.Sleep(failureDelay)
		return unix.LINUX_REBOOT_CMD_RESTART
	}
	child := cmd.Process.Pid
	go background()
	return waitAgent(log, sigs, cmd.Process, func() (unix.WaitStatus, bool) {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				return ws, false
			}
			if pid == child {
				return ws, true
			}
			// an orphan, reaped
		}
	}, time.After)
}

// shutdownDeadline bounds how long a stop asked of PID 1 waits for the
// agent (which stops its services in order, etcd leaving first): a wedged
// agent is then killed and the machine goes down anyway.
const shutdownDeadline = 90 * time.Second

// agent is the agent's process as waitAgent drives it.
type agent interface {
	Signal(os.Signal) error
	Kill() error
}

// waitAgent handles PID 1's signals until the agent exits and returns the
// reboot(2) command the machine ends with. reap reaps exited children and
// reports the agent's status once it has exited; after returns a timer
// channel (time.After; tests pass their own). A stop (Ctrl-Alt-Del,
// SIGTERM, SIGPWR) signals the agent and, if it is not gone by
// shutdownDeadline, kills it.
func waitAgent(log *logger, sigs <-chan os.Signal, a agent, reap func() (unix.WaitStatus, bool), after func(time.Duration) <-chan time.Time) int {
	wanted := -1 // reboot(2) command asked for by a signal
	var deadline <-chan time.Time
	stop := func(cmd int, why string) {
		wanted = cmd
		log.Printf("%s", why)
		_ = a.Signal(unix.SIGTERM)
		if deadline == nil {
			deadline = after(shutdownDeadline)
		}
	}
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case unix.SIGINT: // Ctrl-Alt-Del
				stop(unix.LINUX_REBOOT_CMD_RESTART, "Ctrl-Alt-Del: stopping the agent, then rebooting")
			case unix.SIGTERM, unix.SIGPWR:
				stop(unix.LINUX_REBOOT_CMD_POWER_OFF, sig.String()+": stopping the agent, then powering off")
			case unix.SIGCHLD:
				if ws, exited := reap(); exited {
					return agentExited(log, ws, wanted)
				}
			}
		case <-deadline:
			log.Printf("the agent did not stop within %s: killing it", shutdownDeadline)
			_ = a.Kill()
			deadline = nil // its SIGCHLD ends the wait
		}
	}
}

// agentExited maps the agent's exit to the machine's end.
func agentExited(log *logger, ws unix.WaitStatus, wanted int) int {
	switch {
	case wanted >= 0:
		return wanted
	case ws.Exited() && ws.ExitStatus() == ExitReboot:
		return unix.LINUX_REBOOT_CMD_RESTART
	case ws.Exited() && ws.ExitStatus() == ExitPowerOff:
		return unix.LINUX_REBOOT_CMD_POWER_OFF
	}
	reason := fmt.Sprintf("exit status %d", ws.ExitStatus())
	if ws.Signaled() {
		reason = "signal " + ws.Signal().String()
	}
	log.Printf("the agent failed (%s); rebooting in %s", reason, failureDelay)
	time.Sleep(failureDelay)
	return unix.LINUX_REBOOT_CMD_RESTART
}

// agentArgs are the agent's flags: metal mode plus what the kernel command
// line asks for.
func agentArgs() []string {
	args := []string{"--mode", "metal", "--state-dir", Root}
	data, _ := os.ReadFile("/proc/cmdline")
	if v, ok := platform.ParseCmdline(string(data))[platform.ArgKubernetes]; ok {
		if v == "" {
			v = "true" // a bare flag
		}
		args = append(args, "--kubernetes="+v)
	}
	return args
}

// finish stops every process, syncs, unmounts and ends the machine with the
// reboot(2) command cmd. It never returns.
func finish(log *logger, cmd int) {
	what := map[int]string{unix.LINUX_REBOOT_CMD_RESTART: "reboot", unix.LINUX_REBOOT_CMD_POWER_OFF: "power off"}[cmd]
	log.Printf("%s: stopping every process", what)
	killAll(log)
	unix.Sync()
	unmountAll(log)
	unix.Sync()
	log.Printf("%s now", what)
	for {
		if err := unix.Reboot(cmd); err != nil {
			log.Printf("reboot(2): %v", err)
		}
		time.Sleep(time.Second)
	}
}

// killAll sends SIGTERM to every process, waits up to 5 s for them to go
// (reaping them), then SIGKILLs the rest.
func killAll(log *logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = unix.Kill(-1, unix.SIGTERM)
	for ctx.Err() == nil {
		if _, err := unix.Wait4(-1, nil, unix.WNOHANG, nil); errors.Is(err, unix.ECHILD) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Printf("processes left after 5 s: killing them")
	_ = unix.Kill(-1, unix.SIGKILL)
	for {
		if _, err := unix.Wait4(-1, nil, 0, nil); err != nil {
			return
		}
	}
}

// uptime is the kernel's uptime (a boot timing reference on the console).
func uptime() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return "?"
	}
	return time.Duration(ts.Nano()).Round(time.Millisecond).String()
}
