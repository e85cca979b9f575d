// Package app is machined's entry point: it parses the command line, sets up
// logging, opens the API listener and runs the node, then carries out the
// action the node asks for (re-exec on reboot, exit on shutdown).
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/ballast-os/ballast/machined/launcher"
	"github.com/ballast-os/ballast/machined/logs"
	"github.com/ballast-os/ballast/machined/node"
	"github.com/ballast-os/ballast/machined/pid1"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/version"
)

// Main runs machined and exits the process. As PID 1 it is the machine's
// init (package pid1), which runs the agent as its child in metal mode;
// called as modprobe (the image's /sbin/modprobe links to it) it loads a
// kernel module for the kernel.
func Main() {
	switch {
	case os.Getpid() == 1:
		pid1.Main()
	case filepath.Base(os.Args[0]) == "modprobe":
		os.Exit(pid1.Modprobe(os.Args[1:]))
	}
	tuneGC()
	if err := Run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "machined:", err)
		os.Exit(1)
	}
}

type flags struct {
	mode      string
	stateDir  string
	apiListen string
	logFormat string
	logLevel  string
	version   bool

	kubernetes     bool
	imagesDir      string
	containerdPath string
	kubeletPath    string
}

func parse(args []string, stderr io.Writer) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("machined", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.mode, "mode", "", "how machined runs: container (a process in a network namespace, state under --state-dir) or metal (the agent of a Ballast machine, started by its init)")
	fs.StringVar(&f.stateDir, "state-dir", "", "directory holding STATE and EPHEMERAL in container mode")
	fs.StringVar(&f.apiListen, "api-listen", "0.0.0.0:50000", "machine API address, host or host:port (port 50000 by default)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.BoolVar(&f.kubernetes, "kubernetes", true, "run containerd and, on control planes, the Kubernetes components (false: the node agent and etcd only)")
	fs.StringVar(&f.imagesDir, "images-dir", defaultImagesDir(), "directory of the image archives (*.tar) imported into containerd at start")
	fs.StringVar(&f.containerdPath, "containerd-path", "", "containerd binary (default: next to machined, else in PATH); containerd-shim-runc-v2 must be beside it")
	fs.StringVar(&f.kubeletPath, "kubelet-path", "", "kubelet binary (default: next to machined, else in PATH)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "machined is the Ballast node agent.\n\nUsage:\n  machined --mode container --state-dir DIR [--api-listen ADDR:PORT]\n\nAs /init of a Ballast image (PID 1) it mounts, loads modules, reaps and\nstarts itself in --mode metal; see docs/boot.md.\n\nExample:\n  machined --mode container --state-dir /tmp/n1 --api-listen 127.0.0.2:50000\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}
	return f, nil
}

// Run runs machined until it is told to stop.
func Run(ctx context.Context, args []string, stderr io.Writer) error {
	f, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if f.version {
		fmt.Fprintf(stderr, "machined %s (%s, %s)\n", version.Version, version.GitCommit, version.GoVersion())
		return nil
	}
	switch f.mode {
	case "":
		return errors.New("--mode is required (container or metal)")
	case node.ModeContainer:
		if f.stateDir == "" {
			return errors.New("--state-dir is required in container mode")
		}
	case node.ModeMetal:
		if os.Getenv("BALLAST_PID1") == "" {
			return errors.New("--mode metal is the agent of a Ballast machine and is started by its init (PID 1); on another Linux use --mode container")
		}
		if f.stateDir == "" {
			f.stateDir = pid1.Root
		}
	default:
		return fmt.Errorf("--mode %q: want container or metal", f.mode)
	}
	stateDir, err := filepath.Abs(f.stateDir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	addr, err := client.HostPort(f.apiListen)
	if err != nil {
		return fmt.Errorf("--api-listen: %w", err)
	}
	if f.mode == node.ModeContainer && !launcher.IsAgent() {
		return launch(ctx, f, args, stderr)
	}
	if err := os.MkdirAll(filepath.Join(stateDir, "var", "log"), 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	agentLog, err := logs.NewBuffer(logs.Options{File: filepath.Join(stateDir, "var", "log", node.AgentLogID+".log")})
	if err != nil {
		return err
	}
	defer agentLog.Close()
	logger, err := newLogger(io.MultiWriter(stderr, agentLog), f.logFormat, f.logLevel)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	defer ln.Close()
	logger.Info("machined starting", "version", version.Version, "mode", f.mode, "state_dir", stateDir, "pid", os.Getpid())
	n, err := node.New(node.Options{
		Mode: f.mode, StateDir: stateDir, Listener: ln, Logger: logger, AgentLog: agentLog,
		Kubernetes: f.kubernetes, ImagesDir: f.imagesDir, ContainerdPath: f.containerdPath, KubeletPath: f.kubeletPath,
	})
	if err != nil {
		return err
	}
	action, err := n.Run(ctx)
	if err != nil {
		return err
	}
	switch {
	case f.mode == node.ModeMetal && action == node.ActionReboot:
		logger.Info("rebooting the machine")
		os.Exit(pid1.ExitReboot)
	case f.mode == node.ModeMetal && action == node.ActionShutdown:
		logger.Info("powering off the machine")
		os.Exit(pid1.ExitPowerOff)
	case action == node.ActionReboot:
		// The launcher boots the next slot (container-mode reboot).
		logger.Info("rebooting: the launcher starts the agent again")
		ln.Close()
		agentLog.Close()
		os.Exit(launcher.ExitReboot)
	case action == node.ActionShutdown:
		logger.Info("shut down")
	}
	return nil
}

// launch runs the container-mode boot loader, which runs the agent of the
// node's slot as its child (package launcher).
func launch(ctx context.Context, f *flags, args []string, stderr io.Writer) error {
	logger, err := newLogger(stderr, f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find machined's own binary: %w", err)
	}
	root, err := filepath.Abs(f.stateDir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	return launcher.Run(ctx, launcher.Options{
		Root: root, Machined: exe, ImagesDir: f.imagesDir, Args: args,
		Logger: logger.With("component", "launcher"), Stdout: os.Stdout, Stderr: stderr,
	})
}

// defaultImagesDir is ../images next to the machined binary (the build's
// _out/images), else the OS image's /usr/share/ballast/images.
func defaultImagesDir() string {
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Join(filepath.Dir(filepath.Dir(exe)), "images")
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir
		}
	}
	return "/usr/share/ballast/images"
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
