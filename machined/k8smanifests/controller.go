// Package k8smanifests is the controller that applies the cluster's
// bootstrap manifests (RBAC, kube-proxy, CoreDNS — machined/k8s renders
// them) and labels its control plane's Node. Any control plane may run it:
// the newest set of manifests wins (a control plane with older ones leaves
// the cluster's alone), and one control plane at a time applies a set,
// having claimed the record ConfigMap with a compare-and-swap.
package k8smanifests

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/k8s"
)

// Service is the controller's name as a supervised service.
const Service = "k8s-manifests"

// Record is the ConfigMap (in kube-system) that records the applied
// manifests' version, and who applies or applied them.
const Record = "ballast-manifests"

const recordNamespace = "kube-system"

// Recheck is how often a control plane looks again at the recorded version
// (another control plane may have older or newer manifests).
const Recheck = 30 * time.Second

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

// Kube is what the controller reads and writes in the Kubernetes API.
type Kube interface {
	ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
	CreateConfigMap(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error)
	UpdateConfigMap(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error)
	Apply(ctx context.Context, gvr schema.GroupVersionResource, obj *unstructured.Unstructured) error
	Delete(ctx context.Context, gvr schema.GroupVersionResource, namespace, name string) error
	Secrets(ctx context.Context, namespace, fieldSelector string) (*corev1.SecretList, error)
	DeleteSecret(ctx context.Context, namespace, name string) error
	MergePatchNode(ctx context.Context, name string, patch []byte) error
}

// Desired is what this control plane would apply now: the manifests
// rendered from its machine config, its node name, and a channel closed
// when the config changes.
type Desired func() (m k8s.Manifests, node string, changed <-chan struct{}, err error)

// Controller is the bootstrap-manifests controller.
type Controller struct {
	Kube    Kube
	Desired Desired
	Clock   clock.Clock

	// olderSaid is the newer manifests version last reported as left
	// alone (said once, not at every pass).
	olderSaid string
}

// Run applies the manifests when they are newer than the cluster's (on
// every config change and every Recheck) and labels this control plane's
// Node once it exists, until ctx ends.
func (c *Controller) Run(ctx context.Context, out io.Writer) error {
	labeled := false
	for {
		m, self, changed, err := c.Desired()
		if err != nil {
			return err
		}
		if err := c.apply(ctx, m, self, out); err != nil {
			return err
		}
		if !labeled {
			patch := fmt.Sprintf(`{"metadata":{"labels":{%q:""}}}`, k8s.ControlPlaneLabel)
			switch err := c.Kube.MergePatchNode(ctx, self, []byte(patch)); {
			case err == nil:
				fmt.Fprintf(out, "labeled node %s %s\n", self, k8s.ControlPlaneLabel)
				labeled = true
			case !apierrors.IsNotFound(err):
				fmt.Fprintf(out, "label node %s: %v\n", self, err)
			}
		}
		wait := Recheck
		if !labeled {
			wait = 2 * time.Second // the kubelet has not registered yet
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-c.Clock.After(wait):
		}
	}
}

// manifestsStale is how long a claim to apply manifests may stay
// unfinished before a control plane with the same manifests takes it over
// (its claimer died half-way).
const manifestsStale = 2 * time.Minute

// recorded is what the record ConfigMap says.
type recorded struct {
	id      k8s.ManifestsID
	applied bool // false: claimed, being applied
	by      string
	at      time.Time
}

// parseRecord reads the record; records of revision 1 had only version and
// applied (and were always complete).
func parseRecord(data map[string]string) recorded {
	r := recorded{id: k8s.ManifestsID{Version: data["version"], KubernetesVersion: data["kubernetesVersion"]}, by: data["by"]}
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
func decideManifests(mine k8s.ManifestsID, rec *recorded, now time.Time) manifestsDecision {
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

// apply applies m when it is newer than what the cluster records
// (decideManifests). A control plane first claims the record with a
// compare-and-swap on its resourceVersion — one claimant wins, the others
// see the claim at their next pass — then applies, prunes and marks the
// record applied.
func (c *Controller) apply(ctx context.Context, m k8s.Manifests, self string, out io.Writer) error {
	rec, err := c.Kube.ConfigMap(ctx, recordNamespace, Record)
	var cur *recorded // nil: no record yet
	switch {
	case err == nil:
		r := parseRecord(rec.Data)
		cur = &r
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("read %s: %w", Record, err)
	}
	now := c.Clock.Now()
	switch decideManifests(m.ID(), cur, now) {
	case manifestsCurrent, manifestsBeingApplied:
		return nil
	case manifestsOlder:
		if c.olderSaid != cur.id.Version {
			c.olderSaid = cur.id.Version
			fmt.Fprintf(out, "the cluster runs newer bootstrap manifests (%s, Kubernetes %s, applied by %s) than this control plane's (%s, Kubernetes %s): leaving them\n",
				cur.id.Version, cur.id.KubernetesVersion, cur.by, m.Version, m.KubernetesVersion)
		}
		return nil
	}
	record := func(state string) map[string]string {
		return map[string]string{"version": m.Version, "kubernetesVersion": m.KubernetesVersion, "state": state, "by": self, "at": c.Clock.Now().UTC().Format(time.RFC3339)}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: Record, Namespace: recordNamespace}, Data: record("applying")}
	if cur == nil {
		cm, err = c.Kube.CreateConfigMap(ctx, cm)
	} else {
		cm.ResourceVersion = rec.ResourceVersion
		cm, err = c.Kube.UpdateConfigMap(ctx, cm)
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return nil // another control plane claimed it first: decide again at the next pass
	}
	if err != nil {
		return fmt.Errorf("claim %s: %w", Record, err)
	}
	start := time.Now()
	for _, obj := range m.Objects {
		gvr, ok := resources[obj.GetAPIVersion()+"/"+obj.GetKind()]
		if !ok {
			return fmt.Errorf("manifest %s %s: kind not known to machined", obj.GetKind(), obj.GetName())
		}
		if err := c.Kube.Apply(ctx, gvr, obj); err != nil {
			return fmt.Errorf("apply %s %s: %w", strings.ToLower(obj.GetKind()), obj.GetName(), err)
		}
	}
	if err := c.prune(ctx, out); err != nil {
		return err
	}
	cm.Data = record("applied")
	if _, err := c.Kube.UpdateConfigMap(ctx, cm); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("record manifests: %w", err)
	}
	fmt.Fprintf(out, "applied %d bootstrap objects (version %s, Kubernetes %s) in %s\n", len(m.Objects), m.Version, m.KubernetesVersion, time.Since(start).Round(time.Millisecond))
	return nil
}

// prune deletes what earlier manifests created and the current
// ones dropped (k8s.ObsoleteObjects), and every bootstrap-token Secret
// Ballast made (cluster.token of earlier versions): no bearer token may
// outlive the design that needed it.
func (c *Controller) prune(ctx context.Context, out io.Writer) error {
	for _, o := range k8s.ObsoleteObjects {
		gvr, ok := resources[o.APIVersion+"/"+o.Kind]
		if !ok {
			return fmt.Errorf("obsolete %s %s: kind not known to machined", o.Kind, o.Name)
		}
		switch err := c.Kube.Delete(ctx, gvr, o.Namespace, o.Name); {
		case err == nil:
			fmt.Fprintf(out, "deleted obsolete %s %s\n", strings.ToLower(o.Kind), o.Name)
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("delete obsolete %s %s: %w", strings.ToLower(o.Kind), o.Name, err)
		}
	}
	list, err := c.Kube.Secrets(ctx, "kube-system", "type="+string(corev1.SecretTypeBootstrapToken))
	if err != nil {
		return fmt.Errorf("list bootstrap tokens: %w", err)
	}
	for _, s := range list.Items {
		if !slices.Contains(strings.Split(string(s.Data["auth-extra-groups"]), ","), k8s.LegacyTokenGroup) {
			continue // not Ballast's
		}
		if err := c.Kube.DeleteSecret(ctx, "kube-system", s.Name); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete bootstrap token %s: %w", s.Name, err)
		}
		fmt.Fprintf(out, "deleted Ballast's bootstrap token Secret %s (kubelets no longer join with a token)\n", s.Name)
	}
	return nil
}
