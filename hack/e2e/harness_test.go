// Package e2e runs the real machined and nodectl binaries against each other:
// maintenance mode, mTLS with roles, restarts, crash safety. Binaries come
// from $BALLAST_BIN_DIR (make test-e2e) or are built into a temporary
// directory.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ballast-os/ballast/hack/qemuvm"
)

var binDir string

func TestMain(m *testing.M) {
	binDir = os.Getenv("BALLAST_BIN_DIR")
	cleanup := func() {}
	if binDir == "" {
		dir, err := os.MkdirTemp("", "ballast-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cleanup = func() { os.RemoveAll(dir) }
		for _, c := range []string{"nodectl", "machined"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, c), "github.com/ballast-os/ballast/cmd/"+c)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "build", c, err)
				os.Exit(1)
			}
		}
		binDir = dir
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// machined is one running agent process.
type machined struct {
	t        *testing.T
	stateDir string
	addr     string
	cmd      *exec.Cmd
	log      *syncBuffer
	done     chan struct{}
	exitErr  error
}

// syncBuffer captures a process's output while a test reads it.
type syncBuffer = qemuvm.Buffer

// startMachined starts machined in container mode and waits for its API port.
// The process is killed by PID when the test ends.
func startMachined(t *testing.T, stateDir, addr string) *machined {
	t.Helper()
	return startMachinedIn(t, "", stateDir, addr)
}

// startMachinedIn runs machined (container mode, no Kubernetes) in a named
// network namespace ("" for the host's); nsenter execs it, so the PID is
// machined's.
func startMachinedIn(t *testing.T, netns, stateDir, addr string) *machined {
	t.Helper()
	m := &machined{t: t, stateDir: stateDir, addr: addr, log: &syncBuffer{}, done: make(chan struct{})}
	// Nodes sharing the host's loopback run no Kubernetes: their components'
	// ports would collide (the Kubernetes tests use namespaced clusters).
	args := []string{filepath.Join(binDir, "machined"), "--mode", "container", "--state-dir", stateDir, "--api-listen", addr, "--kubernetes=false"}
	if netns != "" {
		args = append([]string{"nsenter", "--net=/run/netns/" + netns}, args...)
	}
	m.cmd = exec.Command(args[0], args[1:]...)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start machined: %v", err)
	}
	go func() { m.exitErr = m.cmd.Wait(); close(m.done) }()
	t.Cleanup(func() {
		m.kill()
		if t.Failed() {
			t.Logf("machined %s log:\n%s", addr, m.log.String())
		}
	})
	m.waitPort()
	return m
}

func (m *machined) waitPort() {
	m.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-m.done:
			m.t.Fatalf("machined exited: %v\n%s", m.exitErr, m.log.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", m.addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.t.Fatalf("machined did not listen on %s\n%s", m.addr, m.log.String())
}

// kill sends SIGKILL to the process group and waits.
func (m *machined) kill() {
	select {
	case <-m.done:
		return
	default:
	}
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		m.t.Errorf("machined (pid %d) still not reaped 30s after SIGKILL", m.cmd.Process.Pid)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (m *machined) stop() {
	m.t.Helper()
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
		if m.exitErr != nil {
			m.t.Fatalf("machined exited with %v on SIGTERM\n%s", m.exitErr, m.log.String())
		}
	case <-time.After(30 * time.Second):
		m.t.Fatalf("machined did not stop on SIGTERM\n%s", m.log.String())
	}
}

var fingerprintRE = regexp.MustCompile(`fingerprint=([0-9a-f]{64})`)

// fingerprint returns the maintenance certificate fingerprint machined
// logged. machined binds its API port before the node logs the line, so the
// port being open does not mean the line is there yet: wait for it.
func (m *machined) fingerprint() string {
	m.t.Helper()
	var fp string
	waitFor(m.t, "machined's maintenance fingerprint in its log", 30*time.Second, func() error {
		match := fingerprintRE.FindStringSubmatch(m.log.String())
		if match == nil {
			return errors.New("not logged yet")
		}
		fp = match[1]
		return nil
	})
	return fp
}

// run is one nodectl invocation's outcome.
type run struct {
	stdout, stderr string
	code           int
}

func (r run) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// nodectl runs the CLI with args and returns its output and exit code.
func nodectl(t *testing.T, args ...string) run {
	t.Helper()
	r, err := runNodectl(filepath.Join(t.TempDir(), "no-default-nodeconfig"), args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runNodectl runs the CLI with NODECONFIG set to nodeconfig; it reports a
// failure to run it as an error, so that goroutines can call it (t.Fatal
// must only be called from the test's own goroutine).
func runNodectl(nodeconfig string, args ...string) (run, error) {
	return runNodectlFor(60*time.Second, nodeconfig, args...)
}

// runNodectlFor is runNodectl with a time limit other than a minute.
func runNodectlFor(limit time.Duration, nodeconfig string, args ...string) (run, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "nodectl"), args...)
	cmd.Env = append(os.Environ(), "NODECONFIG="+nodeconfig)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := run{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		return r, fmt.Errorf("nodectl %v: %w", args, err)
	}
	return r, nil
}

// mustNodectl fails the test unless nodectl succeeds.
func mustNodectl(t *testing.T, args ...string) run {
	t.Helper()
	r := nodectl(t, args...)
	if r.code != 0 {
		t.Fatalf("nodectl %s failed: %s", strings.Join(args, " "), r)
	}
	return r
}

// genConfig writes a cluster's configs into a new directory.
func genConfig(t *testing.T, name, endpoint string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	mustNodectl(t, append([]string{"gen", "config", name, endpoint, "--output-dir", dir}, extra...)...)
	return dir
}

// waitFor polls fn until it returns nil or the timeout passes; fn is always
// checked at least once, even with a timeout already past.
func waitFor(t *testing.T, what string, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if !time.Now().Before(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

var _ = io.Discard

// mustRun runs a command and fails t with its output when it fails.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nodeNamespace makes network namespace ns for a machined under test: its
// eth0 (nodeIP/24) is a veth to hostLink (hostIP/24) on the host, both up,
// loopback up. Both are removed when the test ends (and beforehand, in case
// an earlier run left them).
func nodeNamespace(t *testing.T, ns, hostLink, hostIP, nodeIP string) {
	t.Helper()
	cleanup := func() {
		_ = exec.Command("ip", "netns", "del", ns).Run()
		_ = exec.Command("ip", "link", "del", hostLink).Run()
	}
	cleanup()
	t.Cleanup(cleanup)
	mustRun(t, "ip", "netns", "add", ns)
	mustRun(t, "ip", "link", "add", hostLink, "type", "veth", "peer", "name", "eth0", "netns", ns)
	mustRun(t, "ip", "addr", "add", hostIP+"/24", "dev", hostLink)
	mustRun(t, "ip", "link", "set", hostLink, "up")
	mustRun(t, "ip", "-n", ns, "addr", "add", nodeIP+"/24", "dev", "eth0")
	mustRun(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	mustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
}

// extraNamespace makes a plain network namespace ns (loopback up), removed
// when the test ends.
func extraNamespace(t *testing.T, ns string) {
	t.Helper()
	_ = exec.Command("ip", "netns", "del", ns).Run()
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	mustRun(t, "ip", "netns", "add", ns)
	mustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
}
