package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/machined/lb"
)

// manifestsService applies the cluster's bootstrap manifests.
const manifestsService = "k8s-manifests"

// fieldManager is Ballast's name in server-side apply.
const fieldManager = "ballast"

// manifestsRecord is the ConfigMap that records the applied manifests'
// version.
const manifestsRecord = "ballast-manifests"

// manifestsRecheck is how often a control plane looks again at the
// recorded version (another control plane may have older manifests).
const manifestsRecheck = 30 * time.Second

// resources maps the kinds of the manifests to their resources.
var resources = map[string]schema.GroupVersionResource{
	"v1/Secret":         {Version: "v1", Resource: "secrets"},
	"v1/ServiceAccount": {Version: "v1", Resource: "serviceaccounts"},
	"v1/ConfigMap":      {Version: "v1", Resource: "configmaps"},
	"v1/Service":        {Version: "v1", Resource: "services"},
	"rbac.authorization.k8s.io/v1/ClusterRole":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	"apps/v1/DaemonSet":                               {Group: "apps", Version: "v1", Resource: "daemonsets"},
	"apps/v1/Deployment":                              {Group: "apps", Version: "v1", Resource: "deployments"},
}

// adminClients are machined's clients on a control plane (its admin
// kubeconfig, through the node's load balancer).
func (n *Node) adminClients() (*kubernetes.Clientset, *dynamic.DynamicClient, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", n.k8sPaths().MachinedKubeconfig())
	if err != nil {
		return nil, nil, fmt.Errorf("machined kubeconfig: %w", err)
	}
	rc.UserAgent = "ballast-machined"
	// Through the load balancer a request may land on an apiserver that
	// listens but is not ready yet: fail it quickly and retry rather than
	// hang. The bootstrap manifests are a burst of requests.
	rc.Timeout = 10 * time.Second
	rc.QPS, rc.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	return cs, dyn, nil
}

// runManifests applies the bootstrap manifests (server-side apply, so it is
// idempotent and any control plane may do it) whenever the recorded version
// differs from this node's, and labels this control plane's Node.
func (n *Node) runManifests(ctx context.Context, out io.Writer) error {
	cs, dyn, err := n.adminClients()
	if err != nil {
		return err
	}
	labeled := false
	for {
		cfg, changed := n.Config()
		if cfg == nil {
			return errors.New("no machine config")
		}
		m, err := k8s.RenderManifests(cfg, "https://"+lb.DefaultListen)
		if err != nil {
			return err
		}
		if err := n.applyManifests(ctx, cs, dyn, m, out); err != nil {
			return err
		}
		if !labeled {
			name := n.nodeName(cfg)
			patch := fmt.Sprintf(`{"metadata":{"labels":{%q:""}}}`, k8s.ControlPlaneLabel)
			_, err := cs.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: fieldManager})
			switch {
			case err == nil:
				fmt.Fprintf(out, "labeled node %s %s\n", name, k8s.ControlPlaneLabel)
				labeled = true
			case !apierrors.IsNotFound(err):
				fmt.Fprintf(out, "label node %s: %v\n", name, err)
			}
		}
		wait := manifestsRecheck
		if !labeled {
			wait = 2 * time.Second // the kubelet has not registered yet
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-n.clock.After(wait):
		}
	}
}

// manifestsStale is how long a claim to apply manifests may stay
// unfinished before a control plane with the same manifests takes it over
// (its claimer died half-way).
const manifestsStale = 2 * time.Minute

// manifestsRecorded is what the record ConfigMap says.
type manifestsRecorded struct {
	id      k8s.ManifestsID
	applied bool // false: claimed, being applied
	by      string
	at      time.Time
}

// parseRecord reads the record; records of revision 1 had only version and
// applied (and were always complete).
func parseRecord(data map[string]string) manifestsRecorded {
	r := manifestsRecorded{id: k8s.ManifestsID{Version: data["version"], KubernetesVersion: data["kubernetesVersion"]}, by: data["by"]}
	rev, _, _ := strings.Cut(data["version"], "-")
	r.id.Revision, _ = strconv.Atoi(rev)
	r.applied = data["state"] == "" || data["state"] == "applied"
	r.at, _ = time.Parse(time.RFC3339, data["at"])
	return r
}

// manifestsDecision is what a control plane does with its manifests.
type manifestsDecision int

const (
	manifestsApply        manifestsDecision = iota
	manifestsCurrent                        // the cluster has them
	manifestsOlder                          // the cluster has newer ones: leave them
	manifestsBeingApplied                   // another control plane is applying them
)

// decideManifests compares this control plane's manifests with the record
// (nil: none): the newer set wins, so control planes of different versions
// never take turns overwriting each other.
func decideManifests(mine k8s.ManifestsID, rec *manifestsRecorded, now time.Time) manifestsDecision {
	if rec == nil {
		return manifestsApply
	}
	switch c := mine.Compare(rec.id); {
	case c < 0:
		return manifestsOlder
	case c > 0:
		return manifestsApply
	case rec.applied:
		return manifestsCurrent
	case now.Sub(rec.at) < manifestsStale:
		return manifestsBeingApplied
	}
	return manifestsApply
}

// applyManifests applies m when it is newer than what the cluster records
// (decideManifests). A control plane first claims the record with a
// compare-and-swap on its resourceVersion — one claimant wins, the others
// see the claim at their next pass — then applies, prunes and marks the
// record applied.
func (n *Node) applyManifests(ctx context.Context, cs *kubernetes.Clientset, dyn *dynamic.DynamicClient, m k8s.Manifests, out io.Writer) error {
	cms := cs.CoreV1().ConfigMaps("kube-system")
	rec, err := cms.Get(ctx, manifestsRecord, metav1.GetOptions{})
	var cur *manifestsRecorded // nil: no record yet
	switch {
	case err == nil:
		r := parseRecord(rec.Data)
		cur = &r
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("read %s: %w", manifestsRecord, err)
	}
	now := n.clock.Now()
	switch decideManifests(m.ID(), cur, now) {
	case manifestsCurrent, manifestsBeingApplied:
		return nil
	case manifestsOlder:
		if n.olderManifestsSaid != cur.id.Version {
			n.olderManifestsSaid = cur.id.Version
			fmt.Fprintf(out, "the cluster runs newer bootstrap manifests (%s, Kubernetes %s, applied by %s) than this control plane's (%s, Kubernetes %s): leaving them\n",
				cur.id.Version, cur.id.KubernetesVersion, cur.by, m.Version, m.KubernetesVersion)
		}
		return nil
	}
	self := n.nodeName(n.desired.Current())
	record := func(state string) map[string]string {
		return map[string]string{"version": m.Version, "kubernetesVersion": m.KubernetesVersion, "state": state, "by": self, "at": n.clock.Now().UTC().Format(time.RFC3339)}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: manifestsRecord, Namespace: "kube-system"}, Data: record("applying")}
	if cur == nil {
		cm, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: fieldManager})
	} else {
		cm.ResourceVersion = rec.ResourceVersion
		cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: fieldManager})
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return nil // another control plane claimed it first: decide again at the next pass
	}
	if err != nil {
		return fmt.Errorf("claim %s: %w", manifestsRecord, err)
	}
	start := time.Now()
	for _, obj := range m.Objects {
		gvr, ok := resources[obj.GetAPIVersion()+"/"+obj.GetKind()]
		if !ok {
			return fmt.Errorf("manifest %s %s: kind not known to machined", obj.GetKind(), obj.GetName())
		}
		var ri dynamic.ResourceInterface = dyn.Resource(gvr)
		if ns := obj.GetNamespace(); ns != "" {
			ri = dyn.Resource(gvr).Namespace(ns)
		}
		if _, err := ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
			return fmt.Errorf("apply %s %s: %w", strings.ToLower(obj.GetKind()), obj.GetName(), err)
		}
	}
	if err := pruneManifests(ctx, cs, dyn, out); err != nil {
		return err
	}
	cm.Data = record("applied")
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("record manifests: %w", err)
	}
	fmt.Fprintf(out, "applied %d bootstrap objects (version %s, Kubernetes %s) in %s\n", len(m.Objects), m.Version, m.KubernetesVersion, time.Since(start).Round(time.Millisecond))
	return nil
}

// pruneManifests deletes what earlier manifests created and the current
// ones dropped (k8s.ObsoleteObjects), and every bootstrap-token Secret
// Ballast made (cluster.token of earlier versions): no bearer token may
// outlive the design that needed it.
func pruneManifests(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, out io.Writer) error {
	for _, o := range k8s.ObsoleteObjects {
		gvr, ok := resources[o.APIVersion+"/"+o.Kind]
		if !ok {
			return fmt.Errorf("obsolete %s %s: kind not known to machined", o.Kind, o.Name)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(gvr)
		if o.Namespace != "" {
			ri = dyn.Resource(gvr).Namespace(o.Namespace)
		}
		switch err := ri.Delete(ctx, o.Name, metav1.DeleteOptions{}); {
		case err == nil:
			fmt.Fprintf(out, "deleted obsolete %s %s\n", strings.ToLower(o.Kind), o.Name)
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("delete obsolete %s %s: %w", strings.ToLower(o.Kind), o.Name, err)
		}
	}
	list, err := cs.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{FieldSelector: "type=" + string(corev1.SecretTypeBootstrapToken)})
	if err != nil {
		return fmt.Errorf("list bootstrap tokens: %w", err)
	}
	for _, s := range list.Items {
		if !slices.Contains(strings.Split(string(s.Data["auth-extra-groups"]), ","), k8s.LegacyTokenGroup) {
			continue // not Ballast's
		}
		if err := cs.CoreV1().Secrets("kube-system").Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete bootstrap token %s: %w", s.Name, err)
		}
		fmt.Fprintf(out, "deleted Ballast's bootstrap token Secret %s (kubelets no longer join with a token)\n", s.Name)
	}
	return nil
}
