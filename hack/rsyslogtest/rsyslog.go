// Package rsyslogtest runs Debian's rsyslogd as a real log receiver for
// tests: TCP and UDP inputs on one address, every message written as
// received to a file, read back as JSON lines.
package rsyslogtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Receiver is one rsyslogd; Start and Stop may be called again (the ports
// stay), to test a receiver that goes away and comes back.
type Receiver struct {
	t                *testing.T
	dir, out         string
	host             string
	TCPPort, UDPPort int
	cmd              *exec.Cmd
}

// New prepares a receiver on host (an address of this machine) with free
// ports; it stops with the test.
func New(t *testing.T, host string) *Receiver {
	t.Helper()
	if _, err := exec.LookPath("rsyslogd"); err != nil {
		t.Fatalf("rsyslogd is missing (hack/install-deps.sh test installs Debian's rsyslog): %v", err)
	}
	dir := t.TempDir()
	r := &Receiver{t: t, dir: dir, out: filepath.Join(dir, "received.log"), host: host,
		TCPPort: freePort(t, "tcp", host), UDPPort: freePort(t, "udp", host)}
	conf := fmt.Sprintf(`global(workDirectory=%q)
module(load="imtcp")
module(load="imudp")
input(type="imtcp" address=%q port="%d")
input(type="imudp" address=%q port="%d")
template(name="raw" type="string" string="%%rawmsg%%\n")
*.* action(type="omfile" file=%q template="raw")
`, dir, host, r.TCPPort, host, r.UDPPort, r.out)
	if err := os.WriteFile(filepath.Join(dir, "rsyslog.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// Start runs rsyslogd and waits until it accepts TCP connections.
func (r *Receiver) Start() {
	r.t.Helper()
	r.cmd = exec.Command("rsyslogd", "-n", "-f", filepath.Join(r.dir, "rsyslog.conf"), "-i", filepath.Join(r.dir, "rsyslog.pid"))
	r.cmd.Stdout, r.cmd.Stderr = os.Stderr, os.Stderr
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	addr := net.JoinHostPort(r.host, fmt.Sprint(r.TCPPort))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("rsyslogd does not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills rsyslogd (by its PID) and waits for it.
func (r *Receiver) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// TCP and UDP are the receiver's endpoints as a log destination names them.
func (r *Receiver) TCP() string { return "tcp://" + net.JoinHostPort(r.host, fmt.Sprint(r.TCPPort)) }
func (r *Receiver) UDP() string { return "udp://" + net.JoinHostPort(r.host, fmt.Sprint(r.UDPPort)) }

// Records decodes every JSON line received so far into a fresh T each.
func Records[T any](r *Receiver) []T {
	f, err := os.Open(r.out)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec T
		if json.Unmarshal([]byte(strings.TrimSpace(sc.Text())), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

func freePort(t *testing.T, network, host string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
