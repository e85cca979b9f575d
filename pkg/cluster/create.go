package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/mod/semver"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/gen"
	"github.com/ballast-os/ballast/pkg/health"
	"github.com/ballast-os/ballast/pkg/nodeconfig"
	"github.com/ballast-os/ballast/pkg/secrets"
)

// ErrNotRoot is returned when the provisioner lacks the privileges it needs.
var ErrNotRoot = errors.New("local clusters need root: network namespaces and bridges are created (run with sudo)")

// Options for Create.
type Options struct {
	Name          string
	ControlPlanes int
	Workers       int
	CIDR          string
	// Root holds the clusters' state (DefaultRoot()).
	Root string
	// Machined is the machined binary to run in each namespace.
	Machined string
	// NoKubernetes runs the nodes without containerd and Kubernetes (the
	// node agent and etcd only).
	NoKubernetes bool
	// ImagesDir holds the image archives the nodes import ("" is machined's
	// default: _out/images next to its binary).
	ImagesDir string
	// NodeconfigPath receives the cluster's context, made current.
	NodeconfigPath string
	// SkipBootstrap leaves etcd unbootstrapped (for bootstrap --recover-from).
	SkipBootstrap bool
	// NoVIP leaves the control planes without a VIP: the endpoint is then
	// the first control plane's address.
	NoVIP bool
	// Patches for both configs, and per role, applied after the cluster's own.
	Patches, ControlPlanePatches, WorkerPatches []string
	// Zones spreads the nodes over this many zones (zone-a, zone-b, …),
	// each role round-robin, as their topology.kubernetes.io/zone label; 0
	// sets no zone.
	Zones int
	// Provisioner is how nodes run: ProvisionerNetns (default) or
	// ProvisionerQEMU (VMs booting the OS artifacts in Artifacts).
	Provisioner string
	// Artifacts holds vmlinuz, initramfs.xz and disk.qcow2 (make images).
	Artifacts string
	// WaitTimeout bounds the wait for a healthy cluster (0: healthWait's
	// default).
	WaitTimeout time.Duration
	// KubernetesVersion is the release the cluster runs ("": the one
	// Ballast pins). Another release (netns only) runs the kubelet and
	// images `make kubernetes` built beside machined's build: _out/k8s/<v>/.
	KubernetesVersion string
	kubeletPath       string
	Progress          io.Writer
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// Create builds the cluster and waits until it is healthy. On failure what
// was created stays recorded, so Destroy removes it.
func Create(ctx context.Context, o Options) (*State, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if !nameRE.MatchString(o.Name) {
		return nil, fmt.Errorf("cluster name %q: use lowercase letters, digits and dashes (at most 32)", o.Name)
	}
	if o.ControlPlanes < 1 {
		return nil, errors.New("--controlplanes must be at least 1")
	}
	if o.Workers < 0 {
		return nil, errors.New("--workers must not be negative")
	}
	switch o.Provisioner {
	case "", ProvisionerNetns:
		o.Provisioner = ProvisionerNetns
		if _, err := os.Stat(o.Machined); err != nil {
			return nil, fmt.Errorf("machined binary: %w (build it with 'make build' or pass --machined-path)", err)
		}
		if err := o.kubernetesRelease(); err != nil {
			return nil, err
		}
	case ProvisionerQEMU:
		if o.KubernetesVersion != "" && o.KubernetesVersion != config.DefaultKubernetesVersion {
			return nil, fmt.Errorf("--kubernetes-version %s: VMs run the release their OS image was built with (%s); only netns clusters run another", o.KubernetesVersion, config.DefaultKubernetesVersion)
		}
		if err := checkArtifacts(o.Artifacts, !o.NoKubernetes); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown provisioner %q: want %s or %s", o.Provisioner, ProvisionerNetns, ProvisionerQEMU)
	}
	if _, err := Load(o.Root, o.Name); err == nil {
		return nil, fmt.Errorf("cluster %q already exists (nodectl cluster destroy --name %s)", o.Name, o.Name)
	}
	nm := namesFor(o.Name)
	p, gw, addrs, err := plan(o.CIDR, o.ControlPlanes+o.Workers)
	if err != nil {
		return nil, err
	}
	if err := checkFree(ctx, nm); err != nil {
		return nil, err
	}
	dir := filepath.Join(o.Root, o.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create cluster dir: %w", err)
	}
	st := &State{Name: o.Name, Provisioner: o.Provisioner, CIDR: p.String(), Gateway: gw.String(), Dir: dir,
		Machined: o.Machined, MachinedArgs: machinedArgs(o)}
	if o.Provisioner == ProvisionerQEMU {
		if st.Artifacts, err = filepath.Abs(o.Artifacts); err != nil {
			return nil, err
		}
	}
	if !o.NoKubernetes && o.Provisioner == ProvisionerNetns {
		st.HostTunables = readTunables()
	}
	st.Endpoint = "https://" + net.JoinHostPort(addrs[0].String(), "6443")
	cpPatches := o.ControlPlanePatches
	if !o.NoVIP {
		// The VIP is the subnet's last usable address; the nodes count up
		// from the start, so it is free unless the subnet is full.
		vip := lastAddr(p).Prev()
		if slices.Contains(addrs, vip) || vip == gw {
			return nil, fmt.Errorf("--cidr %s has no free address left for the VIP (use a larger network or --vip=false)", o.CIDR)
		}
		st.VIP = vip.String()
		st.Endpoint = "https://" + net.JoinHostPort(st.VIP, "6443")
		// A VM keeps its DHCP lease on the link the VIP is on (a namespace's
		// address is set from outside).
		dhcp := ""
		if o.Provisioner == ProvisionerQEMU {
			dhcp = `"dhcp":true,`
		}
		cpPatches = append([]string{`{"machine":{"network":{"interfaces":[{"interface":"eth0",` + dhcp + `"vip":{"ip":"` + st.VIP + `"}}]}}}`}, cpPatches...)
	}
	if o.Zones < 0 || o.Zones > 26 {
		return nil, errors.New("--zones must be between 0 and 26")
	}
	for i, a := range addrs {
		role, short, nth := config.TypeControlPlane, fmt.Sprintf("cp%d", i+1), i
		if i >= o.ControlPlanes {
			nth = i - o.ControlPlanes
			role, short = config.TypeWorker, fmt.Sprintf("w%d", nth+1)
		}
		zone := ""
		if o.Zones > 0 {
			zone = "zone-" + string(rune('a'+nth%o.Zones))
		}
		st.Nodes = append(st.Nodes, NodeState{
			Name: short, Role: role, Address: a.String(), Netns: nm.prefix + short,
			Veth: fmt.Sprintf("%s-%d", nm.veth, i), StateDir: filepath.Join(dir, "nodes", short), Zone: zone,
		})
	}
	logf := func(format string, a ...any) { fmt.Fprintf(o.Progress, format+"\n", a...) }

	// Record the plan before touching the kernel: destroy works from here on.
	st.Bridge = nm.bridge
	if err := st.save(); err != nil {
		return nil, err
	}
	logf("creating bridge %s (%s, gateway %s)", nm.bridge, p, gw)
	if err := setupBridge(ctx, nm, p, gw); err != nil {
		return st, err
	}
	bundle, err := secrets.Generate()
	if err != nil {
		return st, err
	}
	out, err := gen.Generate(gen.Options{ClusterName: o.Name, Endpoint: st.Endpoint, Secrets: bundle,
		// The nodes' resolver is the bridge's own address, where nothing
		// answers: DNS queries CoreDNS forwards stay on this machine.
		Patches:             append([]string{peersPatch(st), `{"machine":{"network":{"nameservers":["` + st.Gateway + `"]}}}`, versionPatch(o.KubernetesVersion)}, o.Patches...),
		ControlPlanePatches: cpPatches, WorkerPatches: o.WorkerPatches})
	if err != nil {
		return st, err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"controlplane.yaml", out.ControlPlane}, {"worker.yaml", out.Worker}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return st, err
		}
	}
	if err := bundle.Save(filepath.Join(dir, "secrets.yaml")); err != nil {
		return st, err
	}
	// The generated os:admin nodeconfig targets every control plane.
	nc := out.NodeConfig
	nc.Contexts[o.Name].Endpoints = addrsOf(st.ControlPlanes())
	if err := nc.Save(filepath.Join(dir, "nodeconfig")); err != nil {
		return st, err
	}

	initrd := ""
	if o.Provisioner == ProvisionerQEMU {
		if initrd, err = vmInitrd(st); err != nil {
			return st, err
		}
		logf("serving DHCP on %s with dnsmasq", nm.bridge)
		if st.DHCPPID, err = startDHCP(ctx, st, p); err != nil {
			return st, err
		}
		if err := st.save(); err != nil {
			return st, err
		}
	}
	for i := range st.Nodes {
		node := &st.Nodes[i]
		var pid int
		if o.Provisioner == ProvisionerQEMU {
			logf("booting VM %s (%s) from %s, console in %s", node.Name, node.Address, st.Artifacts, node.consoleLog())
			pid, err = startVM(ctx, st, *node, initrd)
		} else {
			logf("starting %s (%s) in network namespace %s", node.Name, node.Address, node.Netns)
			if err = setupNode(ctx, nm, *node, p, gw); err == nil {
				pid, err = StartMachined(st, *node)
			}
		}
		if err != nil {
			return st, err
		}
		node.PID = pid
		if err := st.save(); err != nil {
			return st, err
		}
	}

	logf("applying configs")
	if err := applyAll(ctx, st, out.ControlPlane, out.Worker); err != nil {
		return st, err
	}
	ctxConf := nc.Contexts[o.Name]
	dial := health.ContextDialer(ctxConf)
	if !o.SkipBootstrap {
		cp1 := st.ControlPlanes()[0]
		logf("bootstrapping etcd on %s", cp1.Name)
		if err := bootstrap(ctx, dial, cp1.Address); err != nil {
			return st, err
		}
	}
	if err := mergeNodeconfig(o.NodeconfigPath, nc); err != nil {
		return st, err
	}
	if o.SkipBootstrap {
		return st, nil
	}
	logf("waiting for the cluster to be healthy")
	if err := WaitHealthy(ctx, st, dial, healthWait(o), o.Progress); err != nil {
		return st, err
	}
	return st, nil
}

// checkFree refuses to reuse kernel objects another cluster (or a crash) left.
func checkFree(ctx context.Context, nm names) error {
	if _, err := net.InterfaceByName(nm.bridge); err == nil {
		return fmt.Errorf("bridge %s already exists: a cluster of that name was not destroyed (nodectl cluster destroy)", nm.bridge)
	}
	list, err := netnsList(ctx)
	if err != nil {
		return err
	}
	for _, ns := range list {
		if strings.HasPrefix(ns, nm.prefix) {
			return fmt.Errorf("network namespace %s already exists: a cluster of that name was not destroyed (nodectl cluster destroy)", ns)
		}
	}
	return nil
}

// peersPatch gives every node the control-plane addresses as etcd peers, so
// that no node depends on the first one after bootstrap.
func peersPatch(st *State) string {
	var q []string
	for _, n := range st.ControlPlanes() {
		q = append(q, `"`+n.Address+`"`)
	}
	return `{"cluster":{"etcd":{"peers":[` + strings.Join(q, ",") + `]}}}`
}

func addrsOf(nodes []NodeState) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Address)
	}
	return out
}

// machinedArgs are the flags every node's machined gets besides its own.
func machinedArgs(o Options) []string {
	var args []string
	if o.NoKubernetes {
		args = append(args, "--kubernetes=false")
	}
	if o.ImagesDir != "" {
		args = append(args, "--images-dir", o.ImagesDir)
	}
	if o.kubeletPath != "" {
		args = append(args, "--kubelet-path", o.kubeletPath)
	}
	return args
}

// kubernetesRelease points a netns cluster of another Kubernetes release
// at that release's kubelet and image archives, built beside machined's
// (machined in _out/bin, the release in _out/k8s/<v>).
func (o *Options) kubernetesRelease() error {
	v := o.KubernetesVersion
	if v == "" || v == config.DefaultKubernetesVersion || o.NoKubernetes {
		return nil
	}
	if !semver.IsValid(v) || semver.Canonical(v) != v {
		return fmt.Errorf("--kubernetes-version %q is not a release vX.Y.Z", v)
	}
	dir := filepath.Join(filepath.Dir(filepath.Dir(o.Machined)), "k8s", v)
	kubelet, imagesDir := filepath.Join(dir, "kubelet"), filepath.Join(dir, "images")
	for _, p := range []string{kubelet, imagesDir} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("--kubernetes-version %s: %w (build it with KUBERNETES_VERSION=%s make kubernetes)", v, err, v)
		}
	}
	if o.ImagesDir == "" {
		o.ImagesDir = imagesDir
	}
	o.kubeletPath = kubelet
	return nil
}

// versionPatch sets the nodes' cluster.kubernetesVersion (none for "").
func versionPatch(v string) string {
	if v == "" {
		return "{}"
	}
	return `{"cluster":{"kubernetesVersion":"` + v + `"}}`
}

// StartMachined runs machined in the node's namespace, detached from this
// process (its own session), logging to the node's directory. It enters
// only the network namespace (nsenter --net): `ip netns exec` would also
// remount /sys, hiding the cgroup mounts containerd and runc need.
func StartMachined(st *State, node NodeState) (int, error) {
	if err := os.MkdirAll(node.StateDir, 0o700); err != nil {
		return 0, err
	}
	logFile, err := os.OpenFile(filepath.Join(node.StateDir, "machined.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logFile.Close()
	// nsenter enters the namespace and execs machined: same PID.
	args := append([]string{"--net=/run/netns/" + node.Netns, st.Machined,
		"--mode", "container", "--state-dir", node.StateDir, "--api-listen", net.JoinHostPort(node.Address, "50000")}, st.MachinedArgs...)
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start machined for %s: %w", node.Name, err)
	}
	pid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }() // reap it if it dies while we run
	return pid, nil
}

var fingerprintRE = regexp.MustCompile(`fingerprint=([0-9a-f]{64})`)

// applyAll sends each node its config, pinning the maintenance certificate
// fingerprint the node logged.
func applyAll(ctx context.Context, st *State, cp, worker []byte) error {
	var wg sync.WaitGroup
	errs := make([]error, len(st.Nodes))
	for i, node := range st.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := cp
			if node.Role == config.TypeWorker {
				data = worker
			}
			errs[i] = applyOne(ctx, node, node.agentLog(st.Provisioner), bootWait(st.Provisioner), patchNode(data, st.Name+"-"+node.Name, node.Zone, st.Provisioner == ProvisionerQEMU))
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// patchNode sets the node's hostname and, if any, its zone label. Local VMs
// take their clock from the host (qemu's RTC) and their network reaches no
// time server: NTP is off for them (vm).
func patchNode(data []byte, hostname, zone string, vm bool) []byte {
	patches := []string{`{"machine":{"network":{"hostname":"` + hostname + `"}}}`}
	if vm {
		patches = append(patches, `{"machine":{"time":{"disabled":true}}}`)
	}
	if zone != "" {
		patches = append(patches, `{"machine":{"kubelet":{"nodeLabels":{"topology.kubernetes.io/zone":"`+zone+`"}}}}`)
	}
	out, err := config.ApplyPatches(data, patches)
	if err != nil {
		return data
	}
	return out
}

// healthWait is Options.WaitTimeout, or by default 5 minutes, 15 for VMs
// with Kubernetes: under TCG a VM imports the component images and starts
// the apiserver in minutes.
func healthWait(o Options) time.Duration {
	switch {
	case o.WaitTimeout > 0:
		return o.WaitTimeout
	case o.Provisioner == ProvisionerQEMU && !o.NoKubernetes:
		return 15 * time.Minute
	}
	return 5 * time.Minute
}

// bootWait is how long a node may take to serve maintenance mode: a VM
// under TCG boots in tens of seconds, slower when several boot at once.
func bootWait(provisioner string) time.Duration {
	if provisioner == ProvisionerQEMU {
		return 5 * time.Minute
	}
	return 30 * time.Second
}

func applyOne(ctx context.Context, node NodeState, logPath string, wait time.Duration, data []byte) error {
	var fp string
	deadline := time.Now().Add(wait)
	for fp == "" {
		log, _ := os.ReadFile(logPath)
		if m := fingerprintRE.FindSubmatch(log); m != nil {
			fp = string(m[1])
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: machined did not reach maintenance mode; see %s", node.Name, logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c, err := client.New(client.Options{Address: node.Address, Insecure: true, Fingerprint: fp})
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = c.ApplyConfiguration(cctx, &machine.ApplyConfigurationRequest{Data: data})
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("apply config to %s: %w", node.Name, err)
	}
	return nil
}

func bootstrap(ctx context.Context, dial health.Dialer, addr string) error {
	c, err := dial(health.Node{Address: addr, Role: config.TypeControlPlane})
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		_, err = machine.NewEtcdServiceClient(c.Conn()).Bootstrap(cctx, &machine.BootstrapRequest{})
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) || status.Code(err) == codes.AlreadyExists {
			return fmt.Errorf("bootstrap: %w", err)
		}
		time.Sleep(200 * time.Millisecond) // the etcd service may still be starting
	}
}

// WaitHealthy polls the health checks until all pass or timeout, reporting
// progress when the set of failing checks changes.
func WaitHealthy(ctx context.Context, st *State, dial health.Dialer, timeout time.Duration, progress io.Writer) error {
	var nodes []health.Node
	for _, n := range st.Nodes {
		nodes = append(nodes, health.Node{Address: n.Address, Role: n.Role})
	}
	return health.Wait(ctx, nodes, dial, timeout, progress)
}

// mergeNodeconfig puts the cluster's context into the user's client file,
// replacing one of the same name, and makes it current.
func mergeNodeconfig(path string, nc *nodeconfig.Config) error {
	cur, err := nodeconfig.Load(path)
	if err != nil {
		return err
	}
	cur.Merge(nc, true)
	return cur.Save(path)
}
