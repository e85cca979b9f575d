package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ballast-os/ballast/pkg/cluster"
)

// localCluster drives `nodectl cluster` for one test, with its own state
// directory and nodeconfig; it is destroyed when the test ends.
type localCluster struct {
	t          *testing.T
	name, cidr string
	root       string
	nodeconfig string
	etcdPKI    string
}

type clusterShow struct {
	Endpoint string        `json:"endpoint"`
	VIP      string        `json:"vip"`
	Nodes    []clusterNode `json:"nodes"`
}

// clusterNode is one node of `cluster show -o json`.
type clusterNode struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Address  string `json:"address"`
	Netns    string `json:"netns"`
	Veth     string `json:"veth"`
	PID      int    `json:"pid"`
	StateDir string `json:"stateDir"`
}

// SkipPrivilegedEnv names the variable that lets a run without root skip
// the privileged tests instead of failing them (README, docs/development.md).
const SkipPrivilegedEnv = "BALLAST_SKIP_PRIVILEGED"

// requireRoot fails a privileged test run without root, so that the only
// coverage of joins, promotion and recovery never vanishes behind a silent
// skip; the skip must be asked for with BALLAST_SKIP_PRIVILEGED=1.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv(SkipPrivilegedEnv) == "1" {
			t.Skip("privileged test skipped because " + SkipPrivilegedEnv + "=1: local clusters need root for network namespaces and bridges")
		}
		t.Fatal("privileged test run without root: local clusters need root for network namespaces and bridges. " +
			"Run as root, or set " + SkipPrivilegedEnv + "=1 to skip the privileged tests knowingly")
	}
	for _, tool := range []string{"ip", "etcdctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (hack/install-deps.sh test installs it): %v", tool, err)
		}
	}
}

func newLocalCluster(t *testing.T, name, cidr string) *localCluster {
	root := t.TempDir()
	c := &localCluster{t: t, name: name, cidr: cidr, root: root,
		nodeconfig: filepath.Join(root, "nodeconfig"), etcdPKI: filepath.Join(root, "etcd-pki")}
	// A run killed midway leaves namespaces and links behind; destroy works
	// from their names alone, so clear them before starting.
	_ = c.nodectl("cluster", "destroy", "--name", name, "--state", root)
	t.Cleanup(c.destroy)
	return c
}

// nodectl runs nodectl with this cluster's nodeconfig.
func (c *localCluster) nodectl(args ...string) run {
	c.t.Helper()
	ctx := exec.Command(filepath.Join(binDir, "nodectl"), args...)
	ctx.Env = append(os.Environ(), "NODECONFIG="+c.nodeconfig)
	var out, errb bytes.Buffer
	ctx.Stdout, ctx.Stderr = &out, &errb
	err := ctx.Run()
	r := run{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("nodectl: %v", err)
	}
	return r
}

func (c *localCluster) must(args ...string) run {
	c.t.Helper()
	r := c.nodectl(args...)
	if r.code != 0 {
		c.t.Fatalf("nodectl %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// on returns the cluster bound to a subtest's t.
func (c *localCluster) on(t *testing.T) *localCluster {
	cc := *c
	cc.t = t
	return &cc
}

// create makes an etcd-only cluster (no containerd, no Kubernetes): the
// tests of the node agent and etcd need no apiservers competing for the
// CPU. createKubernetes makes a full one.
func (c *localCluster) create(extra ...string) {
	c.t.Helper()
	c.createKubernetes(append([]string{"--no-kubernetes"}, extra...)...)
}

func (c *localCluster) createKubernetes(extra ...string) {
	c.t.Helper()
	c.must(append([]string{"cluster", "create", "--name", c.name, "--cidr", c.cidr, "--state", c.root}, extra...)...)
}

func (c *localCluster) destroy() {
	if c.t.Failed() {
		// machined's log of a netns node; the serial console of a VM.
		logs, _ := filepath.Glob(filepath.Join(c.root, c.name, "nodes", "*", "machined.log"))
		consoles, _ := filepath.Glob(filepath.Join(c.root, c.name, "nodes", "*", "console.log"))
		logs = append(logs, consoles...)
		for _, l := range logs {
			data, _ := os.ReadFile(l)
			lines := strings.Split(string(data), "\n")
			c.t.Logf("--- %s (last 60 lines)\n%s", l, strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	}
	r := c.nodectl("cluster", "destroy", "--name", c.name, "--state", c.root)
	if r.code != 0 {
		c.t.Errorf("cluster destroy: %s", r)
	}
}

func (c *localCluster) show() clusterShow {
	c.t.Helper()
	r := c.must("cluster", "show", "--name", c.name, "--state", c.root, "-o", "json")
	var s clusterShow
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		c.t.Fatalf("cluster show -o json: %v\n%s", err, r.stdout)
	}
	return s
}

func (c *localCluster) health(extra ...string) {
	c.t.Helper()
	c.must(append([]string{"health", "--wait-timeout", "120s"}, extra...)...)
}

// etcdctl runs stock etcdctl against endpoint with a certificate from
// `nodectl etcd client-cert`.
func (c *localCluster) etcdctl(endpoint string, args ...string) (string, error) {
	c.t.Helper()
	if _, err := os.Stat(filepath.Join(c.etcdPKI, "client.key")); err != nil {
		c.must("-n", strings.TrimPrefix(strings.Split(endpoint, ":")[1], "//"), "etcd", "client-cert", "--output-dir", c.etcdPKI)
	}
	full := append([]string{"--endpoints", endpoint, "--cacert", filepath.Join(c.etcdPKI, "ca.crt"),
		"--cert", filepath.Join(c.etcdPKI, "client.crt"), "--key", filepath.Join(c.etcdPKI, "client.key"), "--command-timeout", "10s"}, args...)
	cmd := exec.Command("etcdctl", full...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// memberList returns etcdctl's member list as JSON-decoded members.
func (c *localCluster) memberList(endpoint string) []etcdMember {
	c.t.Helper()
	out, err := c.etcdctl(endpoint, "member", "list", "-w", "json")
	if err != nil {
		c.t.Fatalf("etcdctl member list: %v\n%s", err, out)
	}
	var resp struct {
		Members []etcdMember `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		c.t.Fatalf("decode member list: %v\n%s", err, out)
	}
	return resp.Members
}

type etcdMember struct {
	ID        uint64   `json:"ID"`
	Name      string   `json:"name"`
	PeerURLs  []string `json:"peerURLs"`
	IsLearner bool     `json:"isLearner"`
}

// startNode runs machined again in a node's namespace (after a kill).
func (c *localCluster) startNode(netns, stateDir, addr string) {
	c.t.Helper()
	logf, err := os.OpenFile(filepath.Join(stateDir, "machined.log"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close()
	var st struct {
		MachinedArgs []string `json:"machinedArgs"`
	}
	data, err := os.ReadFile(filepath.Join(c.root, c.name, "cluster.json"))
	if err == nil {
		err = json.Unmarshal(data, &st)
	}
	if err != nil {
		c.t.Fatalf("cluster state: %v", err)
	}
	// As `cluster create` does: nsenter --net keeps the host's /sys (and
	// its cgroup mounts), which `ip netns exec` would remount.
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + netns, filepath.Join(binDir, "machined"),
		"--mode", "container", "--state-dir", stateDir, "--api-listen", addr + ":50000"}, st.MachinedArgs...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
}

// killNode SIGKILLs a node's machined and waits until it is gone.
func killNode(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	waitFor(t, "process gone", 10*time.Second, func() error {
		if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(data), ") Z ") {
			return errors.New("still running")
		}
		return nil
	})
}

// pidOf is a node's recorded process: the launcher, whose SIGKILL is a
// power cut of the whole node (the agent dies with it).
func pidOf(t *testing.T, stateDir string) int {
	t.Helper()
	out, err := exec.Command("pgrep", "-f", "--", "--state-dir "+stateDir+" ").Output()
	if err != nil {
		t.Fatalf("no machined for %s: %v", stateDir, err)
	}
	// The launcher and its agent share a command line: the launcher is
	// the one whose parent is not a match.
	pids := strings.Fields(string(out))
	for _, f := range pids {
		pid, _ := strconv.Atoi(f)
		if !slices.Contains(pids, strconv.Itoa(ppidOf(pid))) {
			return pid
		}
	}
	t.Fatalf("no launcher among %v", pids)
	return 0
}

// ppidOf is a process's parent (0 when unknown), from /proc.
func ppidOf(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// agentPID is the agent a node's launcher runs now (it changes at every
// reboot, the launcher's does not).
func agentPID(t *testing.T, stateDir string) int {
	t.Helper()
	var pid int
	waitFor(t, "the agent of "+stateDir, 30*time.Second, func() error {
		var err error
		pid, err = cluster.AgentPID(pidOf(t, stateDir))
		return err
	})
	return pid
}
