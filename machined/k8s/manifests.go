package k8s

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"text/template"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/yaml"

	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/images"
)

//go:embed manifests/*.yaml
var manifestFiles embed.FS

// ManifestsRevision is bumped when the manifests change in a way their
// hash would not show (it is part of the recorded version).
const ManifestsRevision = 2

// Obsolete names an object earlier manifests created that the current ones
// drop: the manifests controller deletes it.
type Obsolete struct {
	APIVersion, Kind, Namespace, Name string
}

// ObsoleteObjects are what earlier revisions applied and this one removes:
// the bootstrap-token RBAC (kubelets no longer join with a token).
// Bootstrap-token Secrets are found by type, not by name (LegacyTokenGroup).
var ObsoleteObjects = []Obsolete{
	{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding", Name: "ballast:kubelet-bootstrap"},
	{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding", Name: "ballast:node-autoapprove-bootstrap"},
}

// LegacyTokenGroup is the group Ballast's bootstrap tokens (cluster.token,
// before revision 2) authenticated into: a token Secret that names it is
// Ballast's and is deleted.
const LegacyTokenGroup = "system:bootstrappers:ballast"

// Manifests are the cluster's bootstrap objects, rendered for a config.
type Manifests struct {
	Objects []*unstructured.Unstructured
	// Version identifies the set (revision and a hash of the rendered
	// objects); it is recorded in the cluster once applied.
	Version string
	// Revision is ManifestsRevision of the Ballast that rendered them,
	// KubernetesVersion the config's: with Version, what orders two sets
	// (Compare).
	Revision          int
	KubernetesVersion string
}

// ManifestsID is what orders rendered manifests: the newer wins.
type ManifestsID struct {
	Revision          int
	KubernetesVersion string
	Version           string
}

// ID is m's ManifestsID.
func (m Manifests) ID() ManifestsID {
	return ManifestsID{Revision: m.Revision, KubernetesVersion: m.KubernetesVersion, Version: m.Version}
}

// Compare orders a and b (-1, 0, +1): by Ballast's manifests revision, then
// by Kubernetes version (semantic; an unknown one is older), then by the
// version string, so that control planes of different versions agree which
// set wins and never take turns.
func (a ManifestsID) Compare(b ManifestsID) int {
	if c := cmp.Compare(a.Revision, b.Revision); c != 0 {
		return c
	}
	va, erra := utilversion.ParseSemantic(a.KubernetesVersion)
	vb, errb := utilversion.ParseSemantic(b.KubernetesVersion)
	switch {
	case erra == nil && errb == nil:
		switch {
		case va.LessThan(vb):
			return -1
		case vb.LessThan(va):
			return 1
		}
	case erra == nil:
		return 1
	case errb == nil:
		return -1
	}
	return cmp.Compare(a.Version, b.Version)
}

// RenderManifests renders the bootstrap manifests (the RBAC of kubelet
// certificates and the pod network, kube-proxy, CoreDNS) for cfg.
// localEndpoint is the node's API load balancer, which kube-proxy uses on
// every node.
func RenderManifests(cfg *config.Config, localEndpoint string) (Manifests, error) {
	dns, err := DNSServiceIP(cfg)
	if err != nil {
		return Manifests{}, err
	}
	data := map[string]string{
		"PodSubnets":     strings.Join(cfg.Cluster.Network.PodSubnets, ","),
		"LocalEndpoint":  localEndpoint,
		"KubeProxyImage": images.PodImageRef(images.KubeProxy, cfg.Cluster.KubernetesVersion),
		"CoreDNSImage":   images.PodImageRef(images.CoreDNS, cfg.Cluster.KubernetesVersion),
		"DNSServiceIP":   dns.String(),
		"DNSDomain":      cfg.Cluster.Network.DNSDomain,
	}
	funcs := template.FuncMap{"b64": func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }}
	names, err := fs.Glob(manifestFiles, "manifests/*.yaml")
	if err != nil {
		return Manifests{}, err
	}
	sort.Strings(names)
	var out Manifests
	h := sha256.New()
	fmt.Fprintf(h, "revision %d\n", ManifestsRevision)
	for _, name := range names {
		src, err := manifestFiles.ReadFile(name)
		if err != nil {
			return Manifests{}, err
		}
		tmpl, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return Manifests{}, fmt.Errorf("manifest %s: %w", name, err)
		}
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, data); err != nil {
			return Manifests{}, fmt.Errorf("manifest %s: %w", name, err)
		}
		h.Write(buf.Bytes())
		for i, doc := range strings.Split(buf.String(), "\n---\n") {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				return Manifests{}, fmt.Errorf("manifest %s document %d: %w", name, i, err)
			}
			u := &unstructured.Unstructured{Object: obj}
			if u.GetKind() == "" || u.GetName() == "" {
				return Manifests{}, fmt.Errorf("manifest %s document %d: no kind or name", name, i)
			}
			out.Objects = append(out.Objects, u)
		}
	}
	out.Version = fmt.Sprintf("%d-%s", ManifestsRevision, hex.EncodeToString(h.Sum(nil))[:16])
	out.Revision, out.KubernetesVersion = ManifestsRevision, cfg.Cluster.KubernetesVersion
	return out, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
