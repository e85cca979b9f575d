package nodectl

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/version"
)

// bundleFile is one file of a support bundle.
type bundleFile struct {
	name string
	data []byte
}

func newSupportCmd(g *globals) *cobra.Command {
	var outFile, kubeconfig string
	var noKubernetes bool
	cmd := &cobra.Command{
		Use:   "support",
		Short: "Collect a support bundle: each node's logs, dmesg, events, redacted config, etcd, network and versions, and the cluster's nodes, pods and events",
		Long: `Collect what a support request needs into one tar.gz (mode 0600), written
whole or not at all. Per node (a directory named for it): version, the
active config with its secrets redacted (also for os:admin), services and
every service's log (the control-plane components' too) and the agent's own,
dmesg, machine events, network, time, VIP, containers, upgrade status, and on
control planes etcd's members, status and alarms. With Kubernetes (a
kubeconfig given, or an admin one asked of a control plane and kept in
memory only): nodes, pods (environment values replaced by ******) and
events. What a node refused (a role without dmesg, say) is listed in
errors.txt instead of failing the bundle. Never in it: private keys, tokens,
the kubeconfig, Secrets.`,
		Example: `  nodectl -n 10.5.0.2,10.5.0.3,10.5.0.4,10.5.0.5 support -O support.tar.gz
  nodectl -n 10.5.0.2 support -O node.tar.gz --no-kubernetes
  nodectl -n 10.5.0.2 support -O support.tar.gz --kubeconfig ./kubeconfig`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if outFile == "" {
				return fmt.Errorf("--output-file (-O) is required: where to write the bundle, e.g. -O support.tar.gz")
			}
			// An admin kubeconfig is asked of the first control plane
			// that gives one, and kept in memory only.
			ask := &kubeconfigAsk{want: !noKubernetes && kubeconfig == ""}
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) ([]bundleFile, error) {
				files := collectNode(ctx, c)
				if isControlPlaneBundle(files) {
					ask.from(ctx, c)
				}
				return files, nil
			})
			if err != nil {
				return err
			}
			var files []bundleFile
			for _, r := range results {
				if r.err != nil {
					files = append(files, bundleFile{nodeDir(r.node) + "/errors.txt", []byte(oneLine(explain(r.err, r.node)) + "\n")})
					continue
				}
				files = append(files, r.value...)
			}
			if !noKubernetes {
				kfiles, kerr := collectKubernetes(cmd.Context(), kubeconfig, ask)
				files = append(files, kfiles...)
				if kerr != nil {
					files = append(files, bundleFile{"kubernetes/errors.txt", []byte(kerr.Error() + "\n")})
				}
			}
			files = append(files, bundleFile{"README.txt", supportReadme(files)})
			data, err := tarGz(files)
			if err != nil {
				return err
			}
			if err := atomicfile.Write(outFile, data, 0o600); err != nil {
				return fmt.Errorf("write the bundle: %w", err)
			}
			fmt.Fprintf(g.stdout, "support bundle %s: %d files from %d node(s), %d bytes\n", outFile, len(files), len(results), len(data))
			return nil
		},
	}
	cmd.Flags().StringVarP(&outFile, "output-file", "O", "", "where to write the bundle (tar.gz)")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig for the cluster's nodes, pods and events (default: an admin one asked of a control plane, kept in memory)")
	cmd.Flags().BoolVar(&noKubernetes, "no-kubernetes", false, "leave out the Kubernetes objects")
	return cmd
}

// nodeDir is a node's directory in the bundle: its address without the
// default port, safe as a path.
func nodeDir(node string) string {
	d := strings.NewReplacer("/", "_", ":", "_").Replace(strings.TrimSuffix(node, ":50000"))
	if d == "" || d == "." || d == ".." {
		d = "node_" + d
	}
	return d
}

// collectNode reads everything the bundle keeps of one node; what fails is
// written to errors.txt.
func collectNode(ctx context.Context, c *client.Client) []bundleFile {
	dir := nodeDir(c.Address)
	var files []bundleFile
	var errs []string
	add := func(name string, data []byte) { files = append(files, bundleFile{dir + "/" + name, data}) }
	fail := func(what string, err error) { errs = append(errs, what+": "+oneLine(explain(err, c.Address))) }
	msg := func(name string, call func() (proto.Message, error)) {
		m, err := call()
		if err != nil {
			fail(name, err)
			return
		}
		data, err := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Marshal(m)
		if err != nil {
			fail(name, err)
			return
		}
		add(name, append(data, '\n'))
	}
	msg("version.json", func() (proto.Message, error) { return c.Version(ctx, &machine.VersionRequest{}) })
	if cfg, err := c.GetConfiguration(ctx, &machine.GetConfigurationRequest{}); err != nil {
		fail("config.yaml", err)
	} else {
		for name, data := range map[string][]byte{"config.yaml": cfg.GetData(), "config-staged.yaml": cfg.GetStaged()} {
			if data == nil {
				continue
			}
			red, err := config.RedactBytes(data) // whatever the caller's role
			if err != nil {
				fail(name, err)
				continue
			}
			add(name, red)
		}
	}
	var services []string
	msg("services.json", func() (proto.Message, error) {
		l, err := c.ServiceList(ctx, &machine.ServiceListRequest{})
		for _, s := range l.GetServices() {
			services = append(services, s.GetId())
		}
		return l, err
	})
	for _, id := range append(services, "machined") {
		if data, err := readLines(func() (lineStream, error) {
			return c.Logs(ctx, &machine.LogsRequest{Id: id, TailLines: -1})
		}); err != nil {
			fail("logs/"+id+".log", err)
		} else {
			add("logs/"+id+".log", data)
		}
	}
	if data, err := readLines(func() (lineStream, error) { return c.Dmesg(ctx, &machine.DmesgRequest{}) }); err != nil {
		fail("dmesg.log", err)
	} else {
		add("dmesg.log", data)
	}
	if data, err := readEvents(ctx, c); err != nil {
		fail("events.jsonl", err)
	} else {
		add("events.jsonl", data)
	}
	msg("network.json", func() (proto.Message, error) { return c.NetworkStatus(ctx, &machine.NetworkStatusRequest{}) })
	msg("time.json", func() (proto.Message, error) { return c.TimeStatus(ctx, &machine.TimeStatusRequest{}) })
	msg("vip.json", func() (proto.Message, error) { return c.VIPStatus(ctx, &machine.VIPStatusRequest{}) })
	msg("containers.json", func() (proto.Message, error) { return c.Containers(ctx, &machine.ContainersRequest{}) })
	msg("upgrade.json", func() (proto.Message, error) { return c.UpgradeStatus(ctx, &machine.UpgradeStatusRequest{}) })
	if slices.Contains(services, "etcd") {
		e := machine.NewEtcdServiceClient(c.Conn())
		msg("etcd/members.json", func() (proto.Message, error) { return e.EtcdMembers(ctx, &machine.EtcdMembersRequest{}) })
		msg("etcd/status.json", func() (proto.Message, error) { return e.EtcdStatus(ctx, &machine.EtcdStatusRequest{}) })
		msg("etcd/alarms.json", func() (proto.Message, error) { return e.EtcdAlarmList(ctx, &machine.EtcdAlarmListRequest{}) })
	}
	if len(errs) > 0 {
		add("errors.txt", []byte(strings.Join(errs, "\n")+"\n"))
	}
	return files
}

// readLines reads a whole (not followed) stream of lines.
func readLines(open func() (lineStream, error)) ([]byte, error) {
	stream, err := open()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err = eachLine(stream, func(line string) { b.WriteString(line + "\n") })
	return b.Bytes(), err
}

// readEvents reads the node's kept events as JSON lines.
func readEvents(ctx context.Context, c *client.Client) ([]byte, error) {
	stream, err := c.Events(ctx, &machine.EventsRequest{})
	if err != nil {
		return nil, err
	}
	g := &globals{output: "json"}
	var b bytes.Buffer
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return b.Bytes(), nil
		}
		if err != nil {
			return b.Bytes(), err
		}
		line, err := g.eventLine(c.Address, ev)
		if err != nil {
			return nil, err
		}
		b.WriteString(line + "\n")
	}
}

// collectKubernetes lists the cluster's nodes, pods and events, through
// the kubeconfig given or an admin one asked of a control plane (never
// written anywhere).
func collectKubernetes(ctx context.Context, kubeconfig string, ask *kubeconfigAsk) ([]bundleFile, error) {
	var rc *rest.Config
	var err error
	switch {
	case kubeconfig != "":
		if rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
	case ask.kubeconfig != nil:
		if rc, err = clientcmd.RESTConfigFromKubeConfig(ask.kubeconfig); err != nil {
			return nil, fmt.Errorf("the admin kubeconfig of a control plane: %w", err)
		}
	case ask.err != nil:
		return nil, fmt.Errorf("no control plane gave an admin kubeconfig (the Kubernetes objects need os:admin, or --kubeconfig): %w", ask.err)
	default:
		return nil, nil // no control plane among the nodes
	}
	rc.Timeout = 30 * time.Second
	core, err := corev1client.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	var files []bundleFile
	var errs []string
	list := func(name string, call func() (any, error)) {
		v, err := call()
		if err != nil {
			errs = append(errs, name+": "+err.Error())
			return
		}
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			errs = append(errs, name+": "+err.Error())
			return
		}
		files = append(files, bundleFile{"kubernetes/" + name, append(data, '\n')})
	}
	list("nodes.json", func() (any, error) { return core.Nodes().List(ctx, metav1.ListOptions{}) })
	list("pods.json", func() (any, error) {
		pods, err := core.Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for i := range pods.Items { // a literal env value may be a secret
			spec := &pods.Items[i].Spec
			for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
				for j := range cs {
					for k := range cs[j].Env {
						if cs[j].Env[k].Value != "" {
							cs[j].Env[k].Value = config.Redacted
						}
					}
				}
			}
		}
		return pods, nil
	})
	list("events.json", func() (any, error) { return core.Events("").List(ctx, metav1.ListOptions{}) })
	if len(errs) > 0 {
		return files, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return files, nil
}

// kubeconfigAsk gets one admin kubeconfig from the control planes of a
// fan-out: the first to give one ends the asking.
type kubeconfigAsk struct {
	want       bool
	mu         sync.Mutex
	kubeconfig []byte
	err        error
}

func (a *kubeconfigAsk) from(ctx context.Context, c *client.Client) {
	if !a.want {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kubeconfig != nil {
		return
	}
	resp, err := c.Kubeconfig(ctx, &machine.KubeconfigRequest{})
	if err != nil {
		a.err = explain(err, c.Address)
		return
	}
	a.kubeconfig = resp.GetKubeconfig()
}

// isControlPlaneBundle reports whether a node's collected config names a
// control plane.
func isControlPlaneBundle(files []bundleFile) bool {
	for _, f := range files {
		if strings.HasSuffix(f.name, "/config.yaml") {
			cfg, err := config.Decode(f.data)
			return err == nil && cfg.IsControlPlane()
		}
	}
	return false
}

func supportReadme(files []bundleFile) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "Ballast support bundle, written %s by nodectl %s.\n", time.Now().UTC().Format(time.RFC3339), version.Version)
	b.WriteString("Secrets are redacted (******); private keys, tokens and kubeconfigs are never collected.\n\nFiles:\n")
	for _, f := range files {
		fmt.Fprintf(&b, "  %s (%d bytes)\n", f.name, len(f.data))
	}
	return []byte(b.String())
}

// tarGz packs files (mode 0600, sorted by name) into a gzip'd tar.
func tarGz(files []bundleFile) ([]byte, error) {
	slices.SortStableFunc(files, func(a, b bundleFile) int { return strings.Compare(a.name, b.name) })
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	now := time.Now()
	dirs := map[string]bool{}
	for _, f := range files {
		for d := filepath.Dir(f.name); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "support/" + d + "/", Mode: 0o700, ModTime: now}); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "support/" + f.name, Mode: 0o600, Size: int64(len(f.data)), ModTime: now}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
