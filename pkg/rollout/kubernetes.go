package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/semver"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/health"
	"github.com/ballast-os/ballast/pkg/images"
)

// This file upgrades a cluster's Kubernetes (nodectl upgrade-k8s) without
// touching its OS: the target release is staged on every node first, then
// the config fields that select what runs change node by node, live, in
// the order the version-skew policy asks for:
//
//  1. the apiservers, one control plane at a time (cluster.apiServer.image;
//     machined restarts it under the cluster-wide lock, VIP handed off);
//  2. the controller-managers and schedulers, one control plane at a time;
//  3. the kubelets, drained, control planes then workers in batches
//     (machine.kubelet.version);
//  4. the nodes' cluster.kubernetesVersion, which replaces the overrides
//     without restarting anything and makes the control planes apply the
//     bootstrap manifests of the release (kube-proxy, CoreDNS).
//
// Each step waits for what it changed to run the target and for the whole
// cluster to be healthy. Nodes or components already on the target are
// skipped, so a stopped upgrade resumes when run again.

// ErrSkew is an upgrade the Kubernetes version-skew policy does not allow.
var ErrSkew = errors.New("version skew not allowed")

// KubernetesNode is one node as the Kubernetes upgrade found it, from its
// config.
type KubernetesNode struct {
	Node
	// KubernetesVersion is the node's cluster.kubernetesVersion.
	KubernetesVersion string
	// Images are the control-plane components' images (control planes).
	Images map[string]string
	// Kubelet is the kubelet release it runs (machine.kubelet.version,
	// else KubernetesVersion).
	Kubelet string
}

// InspectKubernetes reads every node's build, etcd and VIP role (as
// Inspect) and its config's Kubernetes fields.
func InspectKubernetes(ctx context.Context, nodes []health.Node, dial health.Dialer) ([]KubernetesNode, error) {
	found, err := Inspect(ctx, nodes, dial)
	if err != nil {
		return nil, err
	}
	out := make([]KubernetesNode, 0, len(found))
	for _, n := range found {
		cfg, err := nodeConfig(ctx, n.Node, dial)
		if err != nil {
			return nil, &NodeError{Node: n.String(), Phase: PhaseCheck, Err: err}
		}
		kn := KubernetesNode{Node: n, KubernetesVersion: cfg.Cluster.KubernetesVersion, Kubelet: cfg.KubeletVersion()}
		if cfg.IsControlPlane() {
			kn.Images = map[string]string{}
			for name, c := range componentConfigs(cfg) {
				kn.Images[name] = c.Image
				if c.Image == "" {
					kn.Images[name] = images.Ref(name, cfg.Cluster.KubernetesVersion)
				}
			}
		}
		out = append(out, kn)
	}
	return out, nil
}

func componentConfigs(cfg *config.Config) map[string]config.Component {
	return map[string]config.Component{
		images.APIServer:         cfg.Cluster.APIServer,
		images.ControllerManager: cfg.Cluster.ControllerManager,
		images.Scheduler:         cfg.Cluster.Scheduler,
	}
}

// nodeConfig reads a node's active config (with defaults).
func nodeConfig(ctx context.Context, hn health.Node, dial health.Dialer) (*config.Config, error) {
	c, err := dial(hn)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.GetConfiguration(ctx, &machine.GetConfigurationRequest{})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := config.Decode(resp.GetData())
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return cfg.WithDefaults(), nil
}

// CheckSkew refuses an upgrade from the releases in from to target that
// the version-skew policy forbids: another major, a minor skipped, or a
// downgrade (unless force, for a patch release of the same minor).
func CheckSkew(from []string, target string, force bool) error {
	if !semver.IsValid(target) || semver.Prerelease(target) != "" || semver.Canonical(target) != target {
		return fmt.Errorf("%w: %q is not a release vX.Y.Z", ErrSkew, target)
	}
	for _, f := range from {
		if !semver.IsValid(f) {
			return fmt.Errorf("%w: the cluster runs %q, not a version", ErrSkew, f)
		}
		switch c := semver.Compare(semver.MajorMinor(target), semver.MajorMinor(f)); {
		case semver.Major(target) != semver.Major(f):
			return fmt.Errorf("%w: %s → %s changes the major version", ErrSkew, f, target)
		case c < 0:
			return fmt.Errorf("%w: %s → %s is a downgrade of the minor version", ErrSkew, f, target)
		case c > 0 && semver.MajorMinor(target) != nextMinor(f):
			return fmt.Errorf("%w: %s → %s skips a minor version: upgrade to %s.x first", ErrSkew, f, target, nextMinor(f))
		case semver.Compare(target, f) < 0 && !force:
			return fmt.Errorf("%w: %s → %s is a patch downgrade (--force allows it)", ErrSkew, f, target)
		}
	}
	return nil
}

// nextMinor is v's major.minor+1 ("v1.36.3" → "v1.37").
func nextMinor(v string) string {
	var major, minor int
	fmt.Sscanf(semver.MajorMinor(v), "v%d.%d", &major, &minor)
	return fmt.Sprintf("v%d.%d", major, minor+1)
}

// KubernetesPlan is the order of a Kubernetes upgrade. Each phase lists
// only the nodes it changes.
type KubernetesPlan struct {
	Target string
	// From are the releases the nodes run now (any component).
	From       []string
	APIServers []KubernetesNode
	Components []KubernetesNode // controller-manager and scheduler
	Kubelets   [][]KubernetesNode
	Finalize   []KubernetesNode // cluster.kubernetesVersion set, overrides cleared
}

// Done reports whether every node runs the target already.
func (p KubernetesPlan) Done() bool {
	return len(p.APIServers)+len(p.Components)+len(p.Kubelets)+len(p.Finalize) == 0
}

// MakeKubernetesPlan orders the upgrade of nodes to target: control planes
// in the order MakePlan gives them (VIP holder last), workers in batches of
// maxUnavailable.
func MakeKubernetesPlan(nodes []KubernetesNode, target string, maxUnavailable int) KubernetesPlan {
	p := KubernetesPlan{Target: target}
	byAddr := map[string]KubernetesNode{}
	plain := make([]Node, 0, len(nodes))
	for _, n := range nodes {
		byAddr[n.Address] = n
		plain = append(plain, n.Node)
		for _, v := range append([]string{n.KubernetesVersion, n.Kubelet}, imageVersions(n)...) {
			if v != "" && !slices.Contains(p.From, v) {
				p.From = append(p.From, v)
			}
		}
	}
	slices.SortFunc(p.From, semver.Compare)
	// MakePlan's order; its target matches no build, so no node is skipped.
	order := MakePlan(plain, "\x00", maxUnavailable)
	for _, s := range order.Steps {
		var batch []KubernetesNode
		for _, pn := range s.Nodes {
			n := byAddr[pn.Address]
			if n.Role == config.TypeControlPlane {
				if n.Images[images.APIServer] != images.Ref(images.APIServer, target) {
					p.APIServers = append(p.APIServers, n)
				}
				if n.Images[images.ControllerManager] != images.Ref(images.ControllerManager, target) ||
					n.Images[images.Scheduler] != images.Ref(images.Scheduler, target) {
					p.Components = append(p.Components, n)
				}
			}
			if n.Kubelet != target {
				batch = append(batch, n)
			}
			if n.KubernetesVersion != target || n.Kubelet != n.KubernetesVersion || overridden(n) {
				p.Finalize = append(p.Finalize, n)
			}
		}
		if len(batch) > 0 {
			p.Kubelets = append(p.Kubelets, batch)
		}
	}
	return p
}

// imageVersions are the tags of n's Ballast component images.
func imageVersions(n KubernetesNode) []string {
	var out []string
	for _, img := range n.Images {
		if images.IsLocal(img) {
			if _, tag, ok := strings.Cut(img[len(images.Repository)+1:], ":"); ok {
				out = append(out, tag)
			}
		}
	}
	return out
}

// overridden reports whether a control plane's config names a component
// image of its own (the upgrade's overrides before the last phase).
func overridden(n KubernetesNode) bool {
	for name, img := range n.Images {
		if img != images.Ref(name, n.KubernetesVersion) {
			return true
		}
	}
	return false
}

// Print writes the plan.
func (p KubernetesPlan) Print(w io.Writer, o Options) {
	fmt.Fprintf(w, "Kubernetes upgrade %s → %s\n", strings.Join(p.From, ", "), p.Target)
	if p.Done() {
		fmt.Fprintf(w, "every node runs %s already: nothing to do\n", p.Target)
		return
	}
	names := func(ns []KubernetesNode) string {
		if len(ns) == 0 {
			return "(none left)"
		}
		s := make([]string, len(ns))
		for i, n := range ns {
			s[i] = n.String()
		}
		return strings.Join(s, ", ")
	}
	fmt.Fprintf(w, "  0. stage the release on every node (kubelet, component and kube-proxy images)\n")
	fmt.Fprintf(w, "  1. kube-apiserver, one at a time: %s\n", names(p.APIServers))
	fmt.Fprintf(w, "  2. kube-controller-manager and kube-scheduler, one node at a time: %s\n", names(p.Components))
	for i, b := range p.Kubelets {
		fmt.Fprintf(w, "  3.%d kubelet (drained, up to %s): %s\n", i+1, o.DrainTimeout, names(b))
	}
	if len(p.Kubelets) == 0 {
		fmt.Fprintf(w, "  3. kubelets: (none left)\n")
	}
	fmt.Fprintf(w, "  4. cluster.kubernetesVersion: %s; then the bootstrap manifests (kube-proxy, CoreDNS) of %s\n", names(p.Finalize), p.Target)
	fmt.Fprintf(w, "after each: what changed runs %s and the cluster is healthy (up to %s)\n", p.Target, o.ClusterTimeout)
}

// KubernetesOptions configure a Kubernetes upgrade: Options (Target is the
// release; Upgrade is unused) and how to reach the nodes' configs.
type KubernetesOptions struct {
	Options
	// Stage puts the target release on a node (its Kubernetes bundle).
	Stage func(ctx context.Context, n Node) error
	// Patch applies an RFC 7396 merge patch to a node's config, live.
	Patch func(ctx context.Context, n Node, patch string) error
	// Rest is the admin REST config (the apiservers' /version).
	Rest *rest.Config
}

// Phases of a Kubernetes upgrade.
const (
	PhaseStage      Phase = "stage"
	PhaseAPIServer  Phase = "kube-apiserver"
	PhaseComponents Phase = "components"
	PhaseKubelet    Phase = "kubelet"
	PhaseFinalize   Phase = "version"
	PhaseManifests  Phase = "manifests"
)

// UpgradeKubernetes carries out the plan; the cluster must be healthy when
// it starts.
func UpgradeKubernetes(ctx context.Context, p KubernetesPlan, all []KubernetesNode, o KubernetesOptions) error {
	r := &runner{o: o.Options, start: time.Now()}
	if err := r.clusterHealthy(ctx, 0); err != nil {
		return fmt.Errorf("refusing to start the upgrade (nothing was changed): %w", err)
	}
	k := &k8sRunner{runner: r, o: o, target: p.Target}
	err := k.run(ctx, p, all)
	if err != nil {
		r.printf("", PhaseHealth, "stopped: %v; waiting for the cluster to be healthy (up to %s)", err, o.ClusterTimeout)
		if herr := r.clusterHealthy(ctx, o.ClusterTimeout); herr != nil {
			r.printf("", PhaseHealth, "the cluster is NOT healthy: %v", herr)
		} else {
			r.printf("", PhaseHealth, "the cluster is healthy")
		}
		return err
	}
	r.printf("", PhaseCompleted, "Kubernetes %s on %d node(s) in %s", p.Target, len(all), time.Since(r.start).Round(100*time.Millisecond))
	return nil
}

type k8sRunner struct {
	*runner
	o      KubernetesOptions
	target string
}

func (k *k8sRunner) run(ctx context.Context, p KubernetesPlan, all []KubernetesNode) error {
	if !p.Done() {
		for _, n := range all {
			k.printf(n.String(), PhaseStage, "sending the release (parts the node holds are not sent)")
			if err := k.o.Stage(ctx, n.Node); err != nil {
				return &NodeError{Node: n.String(), Phase: PhaseStage, Err: err}
			}
		}
	}
	for _, n := range p.APIServers {
		patch := fmt.Sprintf(`{"cluster":{"apiServer":{"image":%q}}}`, images.Ref(images.APIServer, k.target))
		if err := k.component(ctx, n, PhaseAPIServer, patch, images.APIServer); err != nil {
			return err
		}
	}
	for _, n := range p.Components {
		patch := fmt.Sprintf(`{"cluster":{"controllerManager":{"image":%q},"scheduler":{"image":%q}}}`,
			images.Ref(images.ControllerManager, k.target), images.Ref(images.Scheduler, k.target))
		if err := k.component(ctx, n, PhaseComponents, patch, images.ControllerManager, images.Scheduler); err != nil {
			return err
		}
	}
	for _, batch := range p.Kubelets {
		if err := k.kubelets(ctx, batch); err != nil {
			return err
		}
	}
	for _, n := range p.Finalize {
		k.printf(n.String(), PhaseFinalize, "cluster.kubernetesVersion: %s, overrides cleared (nothing restarts)", k.target)
		patch := fmt.Sprintf(`{"cluster":{"kubernetesVersion":%q,"apiServer":{"image":null},"controllerManager":{"image":null},"scheduler":{"image":null}},"machine":{"kubelet":{"version":null}}}`, k.target)
		if err := k.o.Patch(ctx, n.Node, patch); err != nil {
			return &NodeError{Node: n.String(), Phase: PhaseFinalize, Err: err}
		}
	}
	if err := k.manifests(ctx, all); err != nil {
		return err
	}
	return k.verify(ctx, all)
}

// component moves one control plane's components (names) to the target
// and waits until they run it and the cluster is healthy.
func (k *k8sRunner) component(ctx context.Context, n KubernetesNode, ph Phase, patch string, names ...string) error {
	began := time.Now()
	k.printf(n.String(), ph, "%s → %s", strings.Join(names, ", "), k.target)
	if err := k.o.Patch(ctx, n.Node, patch); err != nil {
		return &NodeError{Node: n.String(), Phase: ph, Err: err}
	}
	if err := k.waitContainers(ctx, n, names); err != nil {
		return &NodeError{Node: n.String(), Phase: ph, Err: err}
	}
	if slices.Contains(names, images.APIServer) && k.o.Rest != nil {
		if err := k.waitAPIServerVersion(ctx, n); err != nil {
			return &NodeError{Node: n.String(), Phase: ph, Err: err}
		}
	}
	if err := k.clusterHealthy(ctx, k.o.ClusterTimeout); err != nil {
		return &NodeError{Node: n.String(), Phase: PhaseHealth, Err: err}
	}
	k.printf(n.String(), ph, "running %s after %s", k.target, time.Since(began).Round(100*time.Millisecond))
	return nil
}

// waitContainers waits until the node's containers of names run the
// target's images.
func (k *k8sRunner) waitContainers(ctx context.Context, n KubernetesNode, names []string) error {
	want := map[string]string{}
	for _, name := range names {
		want[name] = images.Ref(name, k.target)
	}
	return k.poll(ctx, func(ctx context.Context) error {
		c, err := k.o.Dial(n.Node.Node)
		if err != nil {
			return err
		}
		defer c.Close()
		resp, err := c.Containers(ctx, &machine.ContainersRequest{})
		if err != nil {
			return err
		}
		for name, img := range want {
			i := slices.IndexFunc(resp.GetContainers(), func(c *machine.Container) bool { return c.GetId() == name })
			if i < 0 {
				return fmt.Errorf("no %s container", name)
			}
			if got := resp.GetContainers()[i]; got.GetImage() != img || got.GetStatus() != "running" {
				return fmt.Errorf("%s runs %s (%s), not %s", name, got.GetImage(), got.GetStatus(), img)
			}
		}
		return nil
	})
}

// waitAPIServerVersion waits until the node's apiserver answers /version
// with the target.
func (k *k8sRunner) waitAPIServerVersion(ctx context.Context, n KubernetesNode) error {
	return k.poll(ctx, func(ctx context.Context) error {
		v, err := APIServerVersion(ctx, k.o.Rest, n.Address)
		if err != nil {
			return err
		}
		if v != k.target {
			return fmt.Errorf("kube-apiserver on %s reports %s", n.Address, v)
		}
		return nil
	})
}

// APIServerVersion asks the apiserver on host (port 6443) for its
// gitVersion, with rc's credentials.
func APIServerVersion(ctx context.Context, rc *rest.Config, host string) (string, error) {
	c := rest.CopyConfig(rc)
	c.Host = "https://" + net.JoinHostPort(host, "6443")
	hc, err := rest.HTTPClientFor(c)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Host+"/version", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s/version: %s", c.Host, resp.Status)
	}
	var v struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return "", fmt.Errorf("GET %s/version: %w", c.Host, err)
	}
	return v.GitVersion, nil
}

// kubelets drains a batch, moves its kubelets to the target, waits for
// their Nodes to report it Ready, and uncordons them.
func (k *k8sRunner) kubelets(ctx context.Context, batch []KubernetesNode) error {
	if err := k.clusterHealthy(ctx, 0); err != nil {
		return &NodeError{Node: batch[0].String(), Phase: PhaseCheck, Err: err}
	}
	errs := make([]error, len(batch))
	done := make(chan struct{})
	for i, n := range batch {
		go func() {
			defer func() { done <- struct{}{} }()
			errs[i] = k.kubelet(ctx, n)
		}()
	}
	for range batch {
		<-done
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := k.clusterHealthy(ctx, k.o.ClusterTimeout); err != nil {
		return &NodeError{Node: batch[len(batch)-1].String(), Phase: PhaseHealth, Err: err}
	}
	return nil
}

func (k *k8sRunner) kubelet(ctx context.Context, n KubernetesNode) error {
	began := time.Now()
	err := k.drained(ctx, n.Node, PhaseKubelet, func() error {
		k.printf(n.String(), PhaseKubelet, "kubelet → %s", k.target)
		if err := k.o.Patch(ctx, n.Node, fmt.Sprintf(`{"machine":{"kubelet":{"version":%q}}}`, k.target)); err != nil {
			return err
		}
		if k.o.Kube == nil {
			return nil
		}
		return k.poll(ctx, func(ctx context.Context) error {
			node, err := k.kubeNode(ctx, n.Node)
			if err != nil {
				return err
			}
			if node == nil {
				return fmt.Errorf("no Kubernetes node %s", n.Hostname)
			}
			if v := node.Status.NodeInfo.KubeletVersion; v != k.target {
				return fmt.Errorf("node %s reports kubelet %s", n.Hostname, v)
			}
			if !nodeReady(node) {
				return fmt.Errorf("node %s is not Ready", n.Hostname)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	k.printf(n.String(), PhaseKubelet, "kubelet %s Ready after %s", k.target, time.Since(began).Round(100*time.Millisecond))
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// kubeProxySelector selects the kube-proxy DaemonSet's pods.
const kubeProxySelector = "k8s-app=kube-proxy"

// manifests waits until the control planes applied the release's
// bootstrap manifests and kube-proxy runs the target on every node.
func (k *k8sRunner) manifests(ctx context.Context, all []KubernetesNode) error {
	if k.o.Kube == nil {
		return nil
	}
	began := time.Now()
	want := images.Ref(images.KubeProxy, k.target)
	k.printf("", PhaseManifests, "waiting for kube-proxy %s on every node", k.target)
	err := k.poll(ctx, func(ctx context.Context) error {
		pods, err := k.o.Kube.Core.Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: kubeProxySelector})
		if err != nil {
			return err
		}
		ready := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			if len(p.Spec.Containers) == 0 || p.Spec.Containers[0].Image != want {
				return fmt.Errorf("kube-proxy pod %s on %s runs %v", p.Name, p.Spec.NodeName, containerImages(p))
			}
			if podReady(p) {
				ready++
			}
		}
		if ready < len(all) {
			return fmt.Errorf("%d of %d kube-proxy pods Ready on %s", ready, len(all), k.target)
		}
		return nil
	})
	if err != nil {
		return &NodeError{Node: "cluster", Phase: PhaseManifests, Err: err}
	}
	k.printf("", PhaseManifests, "kube-proxy %s Ready on %d node(s) after %s", k.target, len(all), time.Since(began).Round(100*time.Millisecond))
	return nil
}

func containerImages(p corev1.Pod) []string {
	var out []string
	for _, c := range p.Spec.Containers {
		out = append(out, c.Image)
	}
	return out
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// verify checks, once more, that every component reports the target:
// each apiserver's /version, each control plane's containers, each Node's
// kubelet.
func (k *k8sRunner) verify(ctx context.Context, all []KubernetesNode) error {
	for _, n := range all {
		if n.Role == config.TypeControlPlane {
			if err := k.waitContainers(ctx, n, images.ControlPlaneComponents); err != nil {
				return &NodeError{Node: n.String(), Phase: PhaseCompleted, Err: err}
			}
			if k.o.Rest != nil {
				if err := k.waitAPIServerVersion(ctx, n); err != nil {
					return &NodeError{Node: n.String(), Phase: PhaseCompleted, Err: err}
				}
			}
		}
		if k.o.Kube != nil {
			node, err := k.kubeNode(ctx, n.Node)
			if err != nil {
				return &NodeError{Node: n.String(), Phase: PhaseCompleted, Err: err}
			}
			if node != nil && node.Status.NodeInfo.KubeletVersion != k.target {
				return &NodeError{Node: n.String(), Phase: PhaseCompleted, Err: fmt.Errorf("kubelet reports %s", node.Status.NodeInfo.KubeletVersion)}
			}
		}
	}
	return nil
}

// poll runs check every second until it passes or ClusterTimeout ends,
// and returns its last error.
func (k *k8sRunner) poll(ctx context.Context, check func(context.Context) error) error {
	deadline := time.Now().Add(k.o.ClusterTimeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", k.o.ClusterTimeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
