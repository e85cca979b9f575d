package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// screen is nodectl dashboard running in a pseudo-terminal, with what it
// drew so far.
type screen struct {
	cmd  *exec.Cmd
	tty  *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func startDashboard(t *testing.T, c *localCluster, nodes []string) *screen {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "nodectl"), "-n", strings.Join(nodes, ","), "dashboard", "--interval", "500ms")
	cmd.Env = append(os.Environ(), "NODECONFIG="+c.nodeconfig, "TERM=xterm-256color")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 160, Rows: 50})
	if err != nil {
		t.Fatal(err)
	}
	s := &screen{cmd: cmd, tty: tty, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 32<<10)
		for {
			n, err := tty.Read(buf)
			s.mu.Lock()
			s.out.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by its PID, if q did not end it
		_ = cmd.Wait()
		tty.Close()
	})
	return s
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// lines are the lines drawn so far, without terminal escapes, trimmed.
func (s *screen) lines() []string {
	s.mu.Lock()
	text := ansi.ReplaceAllString(s.out.String(), "\n")
	s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(text, "\r", "\n"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// lastLine is the last line drawn that starts with prefix after the
// selection mark.
func (s *screen) lastLine(prefix string) string {
	last := ""
	for _, l := range s.lines() {
		if strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(l, ">")), prefix) {
			last = l
		}
	}
	return last
}

// lastMatch is the first group of re in the last line it matches.
func (s *screen) lastMatch(re *regexp.Regexp) string {
	last := ""
	for _, l := range s.lines() {
		if m := re.FindStringSubmatch(l); m != nil {
			last = m[1]
		}
	}
	return last
}

func (s *screen) key(t *testing.T, k string) {
	t.Helper()
	if _, err := s.tty.WriteString(k); err != nil {
		t.Fatal(err)
	}
}

var (
	upCount       = regexp.MustCompile(`(\d+)/(\d+) up`)
	timesyncState = regexp.MustCompile(`\btimesync\s+(Running|Stopped|Stopping|Waiting|Starting|Failed|BackingOff|Finished)\b`)
)

// testDashboard draws the dashboard of the control planes in a
// pseudo-terminal: a row per node with its services, etcd role and the
// VIP; a service stopped on one node shows in its row and, once the node
// is selected, in its service list; q ends it.
func testDashboard(t *testing.T, c *localCluster, nodes []string) {
	s := startDashboard(t, c, nodes)
	rows := map[string][]string{}
	waitFor(t, "a row with services, etcd and the VIP for every node", 60*time.Second, func() error {
		for _, n := range nodes {
			l := s.lastLine(n + " ")
			m := upCount.FindStringSubmatch(l)
			if m == nil || !strings.Contains(l, "leader") && !strings.Contains(l, "follower") {
				return fmt.Errorf("row of %s: %q", n, l)
			}
			rows[n] = m
		}
		return nil
	})
	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid)); err == nil {
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				t.Logf("dashboard of %d nodes refreshing every 500ms: %s", len(nodes), strings.Join(strings.Fields(l), " "))
			}
		}
	}
	target := nodes[1]
	before := rows[target]
	t.Logf("row before: %s", s.lastLine(target+" "))
	c.must("-n", target, "service", "timesync", "stop")
	t.Cleanup(func() { c.must("-n", target, "service", "timesync", "start") })
	want := fmt.Sprintf("%d/%s up", atoi(t, before[1])-1, before[2])
	waitFor(t, "the stopped service in the row", 30*time.Second, func() error {
		if l := s.lastLine(target + " "); !strings.Contains(l, want) {
			return fmt.Errorf("row of %s: %q, want %q", target, l, want)
		}
		return nil
	})
	s.key(t, "l") // select the second node
	waitFor(t, "the selected node's service list shows timesync Stopped", 30*time.Second, func() error {
		if l := s.lastLine(target + " "); !strings.HasPrefix(l, ">") {
			return fmt.Errorf("%s not selected: %q", target, l)
		}
		if st := s.lastMatch(timesyncState); st != "Stopped" {
			return fmt.Errorf("timesync shown as %q", st)
		}
		return nil
	})
	s.key(t, "q")
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("q did not end the dashboard")
	}
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("dashboard exited with %v", err)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}
