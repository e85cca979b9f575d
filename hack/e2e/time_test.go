package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTimeFromNTP runs Debian's chronyd in a namespace of its own, serving a
// clock one hour ahead (libfaketime; chronyd -x never touches the host's),
// and a node (container mode) whose machine.time.servers names it: `get
// time` shows the server, the +1h offset and that container mode measures
// without setting the clock; a server that stops answering shows as
// unsynced with the reason, and a live change of the list takes effect.
// (Stepping the clock is metal's: machined/timesync's tests drive it
// through an injected clock adjuster.)
func TestTimeFromNTP(t *testing.T) {
	requireRoot(t)
	for _, bin := range []string{"chronyd", "faketime"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed (hack/install-deps.sh test): %v", bin, err)
		}
	}
	const (
		srvNS, nodeNS = "ballast-e2e-ntpsrv", "ballast-e2e-ntpnode"
		mgmtHost      = "bntp-mgmt"
		api           = "10.69.0.2"
		server        = "10.70.0.1"
	)
	extraNamespace(t, srvNS)
	nodeNamespace(t, nodeNS, mgmtHost, "10.69.0.1", api)
	mustRun(t, "ip", "link", "add", "ntp0", "netns", srvNS, "type", "veth", "peer", "name", "eth1", "netns", nodeNS)
	mustRun(t, "ip", "-n", srvNS, "addr", "add", server+"/24", "dev", "ntp0")
	mustRun(t, "ip", "-n", srvNS, "link", "set", "ntp0", "up")

	dir := t.TempDir()
	conf := filepath.Join(dir, "chrony.conf")
	if err := os.WriteFile(conf, []byte("local stratum 3\nallow all\ncmdport 0\nbindaddress "+server+"\n"+
		"driftfile "+filepath.Join(dir, "drift")+"\npidfile "+filepath.Join(dir, "chronyd.pid")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var srvLog syncBuffer
	srv := exec.Command("nsenter", "--net=/run/netns/"+srvNS, "faketime", "-f", "+1h", "chronyd", "-d", "-x", "-f", conf)
	srv.Stdout, srv.Stderr = &srvLog, &srvLog
	// faketime runs chronyd as its child: the group goes together.
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	srv.WaitDelay = 5 * time.Second
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stopServer := func() {
		if !stopped {
			stopped = true
			_ = syscall.Kill(-srv.Process.Pid, syscall.SIGKILL)
			_ = srv.Wait()
		}
	}
	t.Cleanup(stopServer)

	cfgDir := genConfig(t, "ntp", "https://"+api+":6443")
	nc := filepath.Join(cfgDir, "nodeconfig")
	m := startMachinedIn(t, nodeNS, t.TempDir(), api+":50000")
	mustNodectl(t, "apply-config", "--insecure", "-n", api, "--cert-fingerprint", m.fingerprint(),
		"--file", filepath.Join(cfgDir, "controlplane.yaml"),
		"--config-patch", `{"machine":{"time":{"servers":["`+server+`"]},"network":{"interfaces":[{"interface":"eth1","addresses":["10.70.0.2/24"]}]}}}`)
	type timeStatus struct {
		Synced    bool     `json:"synced"`
		Server    string   `json:"server"`
		Offset    string   `json:"offset"`
		SetsClock bool     `json:"setsClock"`
		Error     string   `json:"error"`
		Servers   []string `json:"servers"`
	}
	get := func() timeStatus {
		t.Helper()
		var res []struct {
			Result timeStatus `json:"result"`
		}
		out := mustNodectl(t, "--nodeconfig", nc, "-n", api, "get", "time", "-o", "json").stdout
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
			t.Fatalf("get time -o json: %v\n%s", err, out)
		}
		return res[0].Result
	}
	waitFor(t, "the node measures chronyd's clock", 60*time.Second, func() error {
		st := get()
		off, err := time.ParseDuration(strings.TrimSuffix(st.Offset, "s") + "s")
		if !st.Synced || st.Server != server || err != nil || math.Abs(off.Hours()-1) > 5.0/3600 {
			return fmt.Errorf("status %+v (chronyd: %s)", st, srvLog.String())
		}
		if st.SetsClock {
			t.Fatalf("container mode claims to set the clock: %+v", st)
		}
		return nil
	})
	out := mustNodectl(t, "--nodeconfig", nc, "-n", api, "get", "time").stdout
	t.Logf("get time:\n%s", out)
	if !strings.Contains(out, server) || !strings.Contains(out, "synced") {
		t.Fatalf("get time table:\n%s", out)
	}

	// The server goes away: the next poll (after at most a minute and a
	// bit) says so.
	stopServer()
	waitFor(t, "unsynced once chronyd is gone", 100*time.Second, func() error {
		if st := get(); st.Synced || !strings.Contains(st.Error, "no time server answered") {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
}
