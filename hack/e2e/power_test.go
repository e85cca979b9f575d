package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/pkg/config"
)

// TestApplyModesRebootResetShutdown covers the apply modes and the power
// RPCs end to end: staged configs become active at reboot, try configs roll
// back, reboot starts a new agent under the same launcher (container mode), reset returns the
// node to maintenance mode, shutdown exits cleanly.
func TestApplyModesRebootResetShutdown(t *testing.T) {
	const addr = "127.0.0.23:50000"
	dir := genConfig(t, "power", "https://127.0.0.23:6443")
	nc := filepath.Join(dir, "nodeconfig")
	cpFile := filepath.Join(dir, "controlplane.yaml")
	operator := filepath.Join(t.TempDir(), "operator")
	mustNodectl(t, "gen", "nodeconfig", "--with-secrets", filepath.Join(dir, "secrets.yaml"), "--roles", "os:operator", "--output", operator, "-e", addr)

	stateDir := t.TempDir()
	m := startMachined(t, stateDir, addr)
	pid := m.cmd.Process.Pid
	mustNodectl(t, "apply-config", "--insecure", "-n", addr, "--file", cpFile)

	hostnameIs := func(want string) func() error {
		return func() error {
			r := nodectl(t, "--nodeconfig", nc, "-n", addr, "get", "config")
			if r.code != 0 {
				return errors.New(r.String())
			}
			if !strings.Contains(r.stdout, "hostname: "+want) {
				return fmt.Errorf("hostname is not %s:\n%s", want, r.stdout)
			}
			return nil
		}
	}

	// dry-run shows a diff and changes nothing.
	r := mustNodectl(t, "--nodeconfig", nc, "-n", addr, "apply-config", "--file", cpFile, "--dry-run",
		"--config-patch", `{"machine":{"network":{"hostname":"dry"}}}`)
	if !strings.Contains(r.stdout, "+    hostname: dry") {
		t.Fatalf("dry-run shows no diff:\n%s", r)
	}
	if hostnameIs("dry")() == nil {
		t.Fatal("dry-run changed the config")
	}

	// try: applied live, then rolled back.
	mustNodectl(t, "--nodeconfig", nc, "-n", addr, "apply-config", "--file", cpFile, "--mode", "try", "--timeout", "3s",
		"--config-patch", `{"machine":{"network":{"hostname":"trial"}}}`)
	if err := hostnameIs("trial")(); err != nil {
		t.Fatalf("try config not active: %v", err)
	}
	waitFor(t, "try config rolled back", 30*time.Second, func() error {
		if hostnameIs("trial")() == nil {
			return errors.New("still trial")
		}
		return nil
	})

	// no-reboot refuses a change that needs a reboot.
	r = nodectl(t, "--nodeconfig", nc, "-n", addr, "apply-config", "--file", cpFile, "--mode", "no-reboot",
		"--config-patch", `{"cluster":{"name":"renamed"}}`)
	if r.code == 0 || !strings.Contains(r.stderr, "cluster.name") {
		t.Fatalf("no-reboot accepted a change needing a reboot:\n%s", r)
	}

	// staged: active only after the reboot, which an operator may request.
	mustNodectl(t, "--nodeconfig", nc, "-n", addr, "apply-config", "--file", cpFile, "--mode", "staged",
		"--config-patch", `{"machine":{"network":{"hostname":"staged"}}}`)
	if hostnameIs("staged")() == nil {
		t.Fatal("staged config active before reboot")
	}
	before := listenerPID(t, addr)
	mustNodectl(t, "--nodeconfig", operator, "-n", addr, "reboot")
	waitFor(t, "staged config active after reboot", 60*time.Second, hostnameIs("staged"))
	select {
	case <-m.done:
		t.Fatalf("machined exited on reboot: %v", m.exitErr)
	default:
	}
	// Container mode reboots through the node's launcher, the process we
	// started: it stays, and a new agent, its child, serves the API.
	got := listenerPID(t, addr)
	if got == before || ppidOf(got) != pid {
		t.Fatalf("after reboot the API is served by pid %d (parent %d), before by %d; want a new child of the launcher %d", got, ppidOf(got), before, pid)
	}
	if n := strings.Count(m.log.String(), "machined starting"); n != 2 {
		t.Fatalf("machined started %d times, want 2 (one reboot)", n)
	}

	// reset needs os:admin and returns the node to maintenance mode.
	if r := nodectl(t, "--nodeconfig", operator, "-n", addr, "reset"); r.code == 0 {
		t.Fatalf("operator could reset:\n%s", r)
	}
	mustNodectl(t, "--nodeconfig", nc, "-n", addr, "reset")
	waitFor(t, "maintenance mode after reset", 60*time.Second, func() error {
		r := nodectl(t, "version", "--insecure", "-n", addr)
		if !strings.Contains(r.stdout, "maintenance mode") {
			return errors.New(r.String())
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(stateDir, "state", "config.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("config survived reset: %v", err)
	}

	// shutdown exits cleanly.
	mustNodectl(t, "apply-config", "--insecure", "-n", addr, "--file", cpFile)
	mustNodectl(t, "--nodeconfig", operator, "-n", addr, "shutdown")
	select {
	case <-m.done:
		if m.exitErr != nil {
			t.Fatalf("shutdown exit: %v", m.exitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("machined did not exit on shutdown")
	}
}

// TestKill9DuringApply kills machined with SIGKILL while configs are being
// applied, round after round, and checks the persisted config is always one
// of the applied ones, whole.
func TestKill9DuringApply(t *testing.T) {
	const addr = "127.0.0.24:50000"
	const rounds = 20
	dir := genConfig(t, "crash", "https://127.0.0.24:6443")
	nc := filepath.Join(dir, "nodeconfig")
	cpFile := filepath.Join(dir, "controlplane.yaml")
	base, err := os.ReadFile(cpFile)
	if err != nil {
		t.Fatal(err)
	}
	// Variants differ in a live field; each is padded so writes take a while.
	variants := map[string]bool{string(base): true}
	var files []string
	for i := range 4 {
		patched, err := config.ApplyPatches(base, []string{fmt.Sprintf(`{"machine":{"network":{"hostname":"v%d"},"certSANs":[%s]}}`, i, sans(i))})
		if err != nil {
			t.Fatal(err)
		}
		variants[string(patched)] = true
		f := filepath.Join(t.TempDir(), fmt.Sprintf("v%d.yaml", i))
		if err := os.WriteFile(f, patched, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}

	stateDir := t.TempDir()
	m := startMachined(t, stateDir, addr)
	mustNodectl(t, "apply-config", "--insecure", "-n", addr, "--file", cpFile)
	applied := 0
	noDefault := filepath.Join(t.TempDir(), "no-default-nodeconfig")
	for round := range rounds {
		stop := make(chan struct{})
		done := make(chan int, 1)
		go func() {
			n := 0
			for i := 0; ; i++ {
				select {
				case <-stop:
					done <- n
					return
				default:
				}
				r, err := runNodectl(noDefault, "--nodeconfig", nc, "-n", addr, "apply-config", "--mode", "no-reboot", "--file", files[i%len(files)])
				if err == nil && r.code == 0 {
					n++
				}
			}
		}()
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		m.kill()
		close(stop)
		select {
		case n := <-done:
			applied += n
		case <-time.After(90 * time.Second):
			t.Fatalf("round %d: the applying goroutine did not stop", round)
		}

		data, err := os.ReadFile(filepath.Join(stateDir, "state", "config.yaml"))
		if err != nil {
			t.Fatalf("round %d: config unreadable after kill -9: %v", round, err)
		}
		if !variants[string(data)] {
			t.Fatalf("round %d: persisted config is not one of the applied ones:\n%s", round, data)
		}
		if _, err := config.Load(data); err != nil {
			t.Fatalf("round %d: persisted config invalid: %v", round, err)
		}
		m = startMachined(t, stateDir, addr)
		mustNodectl(t, "--nodeconfig", nc, "-n", addr, "version")
	}
	if applied == 0 {
		t.Fatal("no apply completed between kills: the test did not exercise writes")
	}
	t.Logf("%d applies completed across %d kill -9 rounds", applied, rounds)
}

// sans returns a long certSANs list so that each config write is sizeable.
func sans(seed int) string {
	parts := make([]string, 200)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"n%d-%d.example.internal"`, seed, i)
	}
	return strings.Join(parts, ",")
}

// listenerPID returns the pid of the process listening on addr, from ss.
func listenerPID(t *testing.T, addr string) int {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("ss", "-Hltnp", "src", host, "sport", "= :"+port).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("nothing listens on %s:\n%s", addr, out)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}
