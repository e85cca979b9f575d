package rollout

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ballast-os/ballast/pkg/images"
)

func TestCheckSkew(t *testing.T) {
	for _, tc := range []struct {
		from   []string
		target string
		force  bool
		want   string // "" allowed, else a part of the refusal
	}{
		{from: []string{"v1.36.1"}, target: "v1.36.3"},
		{from: []string{"v1.36.1", "v1.36.3"}, target: "v1.36.3"}, // a stopped upgrade resumes
		{from: []string{"v1.36.3"}, target: "v1.37.0"},
		{from: []string{"v1.36.3"}, target: "v1.36.3"},
		{from: []string{"v1.35.2", "v1.36.3"}, target: "v1.37.0", want: "skips a minor version: upgrade to v1.36.x first"},
		{from: []string{"v1.36.3"}, target: "v1.38.0", want: "skips a minor version"},
		{from: []string{"v1.36.3"}, target: "v2.0.0", want: "changes the major version"},
		{from: []string{"v1.36.3"}, target: "v1.35.9", want: "downgrade of the minor version"},
		{from: []string{"v1.36.3"}, target: "v1.36.1", want: "patch downgrade (--force allows it)"},
		{from: []string{"v1.36.3"}, target: "v1.36.1", force: true},
		{from: []string{"v1.36.3"}, target: "v1.37.0-rc.1", want: "not a release"},
		{from: []string{"v1.36.3"}, target: "1.37.0", want: "not a release"},
		{from: []string{"latest"}, target: "v1.36.3", want: "not a version"},
	} {
		t.Run(strings.Join(tc.from, ",")+"→"+tc.target, func(t *testing.T) {
			err := CheckSkew(tc.from, tc.target, tc.force)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("allowed, want a refusal with %q", tc.want)
			case tc.want != "" && (!errors.Is(err, ErrSkew) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %q, want ErrSkew with %q", err, tc.want)
			}
		})
	}
}

// k8sCP is a control plane whose config runs version, with the component
// images ov overrides.
func k8sCP(addr, version, kubelet string, vip bool, ov map[string]string) KubernetesNode {
	n := KubernetesNode{Node: cp(addr, "b1", false, vip), KubernetesVersion: version, Kubelet: kubelet, Images: map[string]string{}}
	for _, c := range images.ControlPlaneComponents {
		n.Images[c] = images.Ref(c, version)
		if img, ok := ov[c]; ok {
			n.Images[c] = img
		}
	}
	return n
}

func k8sWorker(addr, version, kubelet string) KubernetesNode {
	return KubernetesNode{Node: worker(addr, "b1"), KubernetesVersion: version, Kubelet: kubelet}
}

func addrs(ns []KubernetesNode) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Address)
	}
	return out
}

func TestMakeKubernetesPlan(t *testing.T) {
	const from, to = "v1.36.1", "v1.36.3"
	newAPI := map[string]string{images.APIServer: images.Ref(images.APIServer, to)}
	newAll := map[string]string{}
	for _, c := range images.ControlPlaneComponents {
		newAll[c] = images.Ref(c, to)
	}
	for _, tc := range []struct {
		name                 string
		nodes                []KubernetesNode
		maxUnav              int
		api, comps, finalize []string
		kubelets             [][]string
		fromVersions         []string
		done                 bool
	}{
		{
			name: "a whole cluster: control planes (VIP holder last), then workers in batches",
			nodes: []KubernetesNode{k8sWorker("w1", from, from), k8sCP("c1", from, from, true, nil), k8sCP("c2", from, from, false, nil),
				k8sCP("c3", from, from, false, nil), k8sWorker("w2", from, from), k8sWorker("w3", from, from)},
			maxUnav:      2,
			api:          []string{"c2", "c3", "c1"},
			comps:        []string{"c2", "c3", "c1"},
			kubelets:     [][]string{{"c2"}, {"c3"}, {"c1"}, {"w1", "w2"}, {"w3"}},
			finalize:     []string{"c2", "c3", "c1", "w1", "w2", "w3"},
			fromVersions: []string{from},
		},
		{
			name: "resumed after the apiservers and one kubelet: only what is left",
			nodes: []KubernetesNode{k8sCP("c1", from, to, false, newAll), k8sCP("c2", from, from, false, newAPI),
				k8sWorker("w1", from, from)},
			comps:        []string{"c2"},
			kubelets:     [][]string{{"c2"}, {"w1"}},
			finalize:     []string{"c1", "c2", "w1"},
			fromVersions: []string{from, to},
		},
		{
			name:         "only the last phase left: the overrides are cleared",
			nodes:        []KubernetesNode{k8sCP("c1", from, to, false, newAll), k8sWorker("w1", from, to)},
			finalize:     []string{"c1", "w1"},
			fromVersions: []string{from, to},
		},
		{
			name:         "every node on the target: nothing to do",
			nodes:        []KubernetesNode{k8sCP("c1", to, to, false, nil), k8sWorker("w1", to, to)},
			fromVersions: []string{to},
			done:         true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := MakeKubernetesPlan(tc.nodes, to, tc.maxUnav)
			var kubelets [][]string
			for _, b := range p.Kubelets {
				kubelets = append(kubelets, addrs(b))
			}
			for what, got := range map[string][2]any{
				"apiservers": {addrs(p.APIServers), tc.api},
				"components": {addrs(p.Components), tc.comps},
				"kubelets":   {kubelets, tc.kubelets},
				"finalize":   {addrs(p.Finalize), tc.finalize},
				"from":       {p.From, tc.fromVersions},
				"done":       {p.Done(), tc.done},
			} {
				if !reflect.DeepEqual(got[0], got[1]) {
					t.Errorf("%s: %v, want %v", what, got[0], got[1])
				}
			}
			var out bytes.Buffer
			p.Print(&out, Options{})
			if !strings.Contains(out.String(), "→ "+to) {
				t.Errorf("the plan does not name the target:\n%s", out.String())
			}
		})
	}
}
