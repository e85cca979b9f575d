package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ballast-os/ballast/hack/netnstest"
)

// A vipFleet is three nodes sharing a VIP on a bridge: Ballast's control
// planes, or keepalived instances doing the same job.
type vipFleet interface {
	name() string
	namespaces() []string
	vip() string
	crash(i int) error        // links down and the agent SIGKILLed (power loss)
	restoreCrash(i int) error // links up, agent started again
	partition(i int) error    // links down, the agent alive
	heal(i int) error
	namespace(i int) string
	graceful(i int) error // the agent stopped cleanly (reboot, systemctl stop)
	restoreGraceful(i int) error
	settle() error // wait until every node runs and is in sync again
	close()
}

type vipResult struct {
	fleet                                 string
	crash, partition, isolation, graceful []time.Duration
	doubles                               []string
	samples                               int
	// isolationDoubles counts samples with two holders during isolation
	// rounds (links up, traffic dropped): split brain.
	isolationDoubles int
}

// isolate drops all traffic of a namespace but its loopback with nftables:
// the link stays up, so an agent that only watches its link does not notice.
func isolate(ns string) error {
	cmd := exec.Command("nsenter", "--net=/run/netns/"+ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`table inet benchiso {
  chain in { type filter hook input priority 0; policy drop; iifname "lo" accept; }
  chain out { type filter hook output priority 0; policy drop; oifname "lo" accept; }
}
`)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("isolate %s: %w: %s", ns, err, out)
	}
	return nil
}

func unisolate(ns string) error {
	return run("nsenter", "--net=/run/netns/"+ns, "nft", "delete", "table", "inet", "benchiso")
}

// measureVIP runs rounds of each fault against f, measuring from the fault to
// the VIP answering TCP from another node, while a 20 ms sampler counts
// moments with two holders on up links.
func measureVIP(f vipFleet, rounds int) (vipResult, error) {
	r := vipResult{fleet: f.name()}
	byNS := map[string]int{}
	for i, ns := range f.namespaces() {
		byNS[ns] = i
		ln, err := netnstest.ListenIn(ns, "0.0.0.0:6443")
		if err != nil {
			return r, err
		}
		defer ln.Close()
		go netnstest.ServeName(ln, ns)
	}
	smp, err := netnstest.StartSampler(f.vip(), "eth0", f.namespaces(), 20*time.Millisecond)
	if err != nil {
		return r, err
	}
	defer smp.Stop()
	addr := net.JoinHostPort(f.vip(), "6443")
	holder := func() (string, error) {
		deadline := time.Now().Add(60 * time.Second)
		for {
			if hs := smp.Holders(); len(hs) == 1 {
				if got, err := netnstest.Answer(addr, time.Second); err == nil && got == hs[0] {
					return hs[0], nil
				}
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("%s: no single VIP holder answering (holders %v)", f.name(), smp.Holders())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	failover := func(old string, start time.Time) (time.Duration, error) {
		deadline := start.Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if got, err := netnstest.Answer(addr, 100*time.Millisecond); err == nil && got != old {
				return time.Since(start), nil
			}
			time.Sleep(5 * time.Millisecond)
		}
		return 0, fmt.Errorf("%s: the VIP did not move away from %s", f.name(), old)
	}
	type fault struct {
		name     string
		do, undo func(int) error
		into     *[]time.Duration
	}
	faults := []fault{
		{"crash", f.crash, f.restoreCrash, &r.crash},
		{"partition", f.partition, f.heal, &r.partition},
		{"isolation", func(i int) error { return isolate(f.namespace(i)) }, func(i int) error { return unisolate(f.namespace(i)) }, &r.isolation},
		{"graceful", f.graceful, f.restoreGraceful, &r.graceful},
	}
	for _, ft := range faults {
		for round := range rounds {
			if err := f.settle(); err != nil {
				return r, err
			}
			h, err := holder()
			if err != nil {
				return r, err
			}
			start := time.Now()
			if err := ft.do(byNS[h]); err != nil {
				return r, err
			}
			took, err := failover(h, start)
			if err != nil {
				return r, err
			}
			*ft.into = append(*ft.into, took)
			before := len(smp.Violations())
			if ft.name == "partition" || ft.name == "isolation" {
				time.Sleep(2 * time.Second) // the isolated side may act meanwhile
			}
			if ft.name == "isolation" {
				r.isolationDoubles += len(smp.Violations()) - before
			}
			if err := ft.undo(byNS[h]); err != nil {
				return r, err
			}
			fmt.Printf("%s %s %d/%d: %s\n", f.name(), ft.name, round+1, rounds, took.Round(time.Millisecond))
		}
	}
	if err := f.settle(); err != nil {
		return r, err
	}
	smp.Stop()
	r.doubles, r.samples = smp.Violations(), smp.Samples()
	return r, nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// ballastFleet is a 3-control-plane local cluster made by nodectl.
type ballastFleet struct {
	root, cluster string
	env           []string
	nodes         []struct{ name, addr, netns, stateDir, veth string }
	vipAddr       string
}

func newBallastFleet() (*ballastFleet, error) {
	root, err := os.MkdirTemp("", "ballast-bench-vip-")
	if err != nil {
		return nil, err
	}
	f := &ballastFleet{root: root, cluster: "benchvip", env: []string{"NODECONFIG=" + filepath.Join(root, "nodeconfig")}}
	_, _ = nodectl(f.env, "cluster", "destroy", "--name", f.cluster, "--state", root)
	if _, err := nodectl(f.env, "cluster", "create", "--name", f.cluster, "--state", root, "--controlplanes", "3", "--workers", "0", "--cidr", "10.86.0.0/24", "--no-kubernetes"); err != nil {
		return nil, err
	}
	f.vipAddr = "10.86.0.254"
	out, err := nodectl(f.env, "cluster", "show", "--name", f.cluster, "--state", root, "-o", "json")
	if err != nil {
		return nil, err
	}
	var show struct {
		Nodes []struct {
			Name, Address, Netns, StateDir, Veth string
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &show); err != nil {
		return nil, fmt.Errorf("cluster show: %w", err)
	}
	for _, n := range show.Nodes {
		f.nodes = append(f.nodes, struct{ name, addr, netns, stateDir, veth string }{n.Name, n.Address, n.Netns, n.StateDir, n.Veth})
	}
	return f, nil
}

func (f *ballastFleet) name() string           { return "Ballast" }
func (f *ballastFleet) namespace(i int) string { return f.nodes[i].netns }
func (f *ballastFleet) vip() string            { return f.vipAddr }
func (f *ballastFleet) namespaces() []string {
	var out []string
	for _, n := range f.nodes {
		out = append(out, n.netns)
	}
	return out
}

func (f *ballastFleet) pid(i int) (int, error) {
	out, err := exec.Command("pgrep", "-f", "--", "--state-dir "+f.nodes[i].stateDir+" ").Output()
	if err != nil {
		return 0, fmt.Errorf("no machined for %s", f.nodes[i].name)
	}
	var pid int
	_, err = fmt.Sscan(strings.Fields(string(out))[0], &pid)
	return pid, err
}

func (f *ballastFleet) kill(i int) error {
	pid, err := f.pid(i)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	for range 200 {
		if err := syscall.Kill(pid, 0); err != nil {
			return nil
		}
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(b), ") Z ") {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("machined %d did not die", pid)
}

func (f *ballastFleet) start(i int) error {
	n := f.nodes[i]
	logf, err := os.OpenFile(filepath.Join(n.stateDir, "machined.log"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", "--net=/run/netns/"+n.netns, filepath.Join(*binDir, "machined"),
		"--mode", "container", "--state-dir", n.stateDir, "--api-listen", n.addr+":50000", "--kubernetes=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

// link sets node i's cable (the host's side of its veth) up or down:
// machined keeps its own links up, as it would on a machine.
func (f *ballastFleet) link(i int, state string) error {
	return run("ip", "link", "set", f.nodes[i].veth, state)
}

func (f *ballastFleet) crash(i int) error {
	if err := f.link(i, "down"); err != nil {
		return err
	}
	return f.kill(i)
}

func (f *ballastFleet) restoreCrash(i int) error {
	if err := f.link(i, "up"); err != nil {
		return err
	}
	return f.start(i)
}

func (f *ballastFleet) partition(i int) error { return f.link(i, "down") }
func (f *ballastFleet) heal(i int) error      { return f.link(i, "up") }

func (f *ballastFleet) graceful(i int) error {
	_, err := nodectl(f.env, "-n", f.nodes[i].addr, "reboot")
	return err
}

func (f *ballastFleet) restoreGraceful(int) error { return nil } // it reboots by itself

func (f *ballastFleet) settle() error {
	_, err := nodectl(f.env, "health", "--wait-timeout", "120s", "--control-plane-nodes", f.nodes[0].addr+","+f.nodes[1].addr+","+f.nodes[2].addr)
	return err
}

func (f *ballastFleet) close() {
	_, _ = nodectl(f.env, "cluster", "destroy", "--name", f.cluster, "--state", f.root)
	os.RemoveAll(f.root)
}

// keepalivedFleet is Debian's keepalived (VRRP, 1 s adverts) on three
// namespaces of its own bridge: the classic recipe's VIP.
type keepalivedFleet struct {
	dir    string
	bridge string
	nss    []string
	procs  []*exec.Cmd
}

const kaVIP = "10.87.0.254"

func newKeepalivedFleet() (*keepalivedFleet, error) {
	dir, err := os.MkdirTemp("", "ballast-bench-ka-")
	if err != nil {
		return nil, err
	}
	f := &keepalivedFleet{dir: dir, bridge: "bkabr0", procs: make([]*exec.Cmd, 3)}
	f.cleanup()
	if err := run("ip", "link", "add", f.bridge, "type", "bridge"); err != nil {
		return nil, err
	}
	if err := run("ip", "addr", "add", "10.87.0.1/24", "dev", f.bridge); err != nil {
		return nil, err
	}
	if err := run("ip", "link", "set", f.bridge, "up"); err != nil {
		return nil, err
	}
	for i := range 3 {
		ns, veth := fmt.Sprintf("bench-ka-%d", i+1), fmt.Sprintf("bkav%d", i+1)
		f.nss = append(f.nss, ns)
		for _, args := range [][]string{
			{"netns", "add", ns},
			{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"link", "set", veth, "master", f.bridge, "up"},
			{"-n", ns, "addr", "add", fmt.Sprintf("10.87.0.%d/24", i+2), "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		} {
			if err := run("ip", args...); err != nil {
				f.close()
				return nil, err
			}
		}
		conf := fmt.Sprintf(`global_defs {
  router_id ka%d
  vrrp_garp_master_delay 1
}
vrrp_instance VI_1 {
  state BACKUP
  nopreempt
  interface eth0
  virtual_router_id 51
  priority %d
  advert_int 1
  virtual_ipaddress {
    %s/32 dev eth0
  }
}
`, i+1, 100-i, kaVIP)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("ka%d.conf", i+1)), []byte(conf), 0o600); err != nil {
			return nil, err
		}
		if err := f.start(i); err != nil {
			f.close()
			return nil, err
		}
	}
	return f, nil
}

func (f *keepalivedFleet) start(i int) error {
	p := func(s string) string { return filepath.Join(f.dir, fmt.Sprintf("%s%d", s, i+1)) }
	cmd := exec.Command("nsenter", "--net=/run/netns/"+f.nss[i], "keepalived", "--dont-fork", "--vrrp", "--log-console",
		"-f", p("ka")+".conf", "-p", p("ka")+".pid", "-r", p("vrrp")+".pid", "-c", p("chk")+".pid")
	logf, err := os.OpenFile(p("ka")+".log", os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	logf.Close()
	f.procs[i] = cmd
	go func() { _ = cmd.Wait() }()
	return nil
}

func (f *keepalivedFleet) signal(i int, sig syscall.Signal) error {
	c := f.procs[i]
	if c == nil || c.Process == nil {
		return fmt.Errorf("keepalived %d not running", i+1)
	}
	_ = syscall.Kill(-c.Process.Pid, sig) // the whole group: parent and VRRP child
	for range 500 {
		if err := syscall.Kill(-c.Process.Pid, 0); err != nil {
			f.procs[i] = nil
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("keepalived %d did not stop on %s", i+1, sig)
}

func (f *keepalivedFleet) name() string           { return "keepalived" }
func (f *keepalivedFleet) namespace(i int) string { return f.nss[i] }
func (f *keepalivedFleet) vip() string            { return kaVIP }
func (f *keepalivedFleet) namespaces() []string   { return f.nss }

// link sets node i's cable (the host's side of its veth) up or down, as
// for Ballast's nodes.
func (f *keepalivedFleet) link(i int, state string) error {
	return run("ip", "link", "set", fmt.Sprintf("bkav%d", i+1), state)
}

func (f *keepalivedFleet) crash(i int) error {
	if err := f.link(i, "down"); err != nil {
		return err
	}
	return f.signal(i, syscall.SIGKILL)
}

func (f *keepalivedFleet) restoreCrash(i int) error {
	// A killed keepalived leaves its VIP on the link: power loss takes it.
	_ = run("ip", "-n", f.nss[i], "addr", "del", kaVIP+"/32", "dev", "eth0")
	if err := f.link(i, "up"); err != nil {
		return err
	}
	return f.start(i)
}

func (f *keepalivedFleet) partition(i int) error { return f.link(i, "down") }
func (f *keepalivedFleet) heal(i int) error      { return f.link(i, "up") }
func (f *keepalivedFleet) graceful(i int) error  { return f.signal(i, syscall.SIGTERM) }
func (f *keepalivedFleet) restoreGraceful(i int) error {
	return f.start(i)
}

// settle gives VRRP time to agree again (three advert intervals).
func (f *keepalivedFleet) settle() error {
	time.Sleep(3500 * time.Millisecond)
	return nil
}

func (f *keepalivedFleet) cleanup() {
	for i := range 3 {
		_ = run("ip", "netns", "del", fmt.Sprintf("bench-ka-%d", i+1))
		_ = run("ip", "link", "del", fmt.Sprintf("bkav%d", i+1))
	}
	_ = run("ip", "link", "del", "bkabr0")
}

func (f *keepalivedFleet) close() {
	for i := range f.procs {
		if f.procs[i] != nil {
			_ = f.signal(i, syscall.SIGKILL)
		}
	}
	f.cleanup()
	os.RemoveAll(f.dir)
}
