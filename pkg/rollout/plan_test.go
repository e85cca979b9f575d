package rollout

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/health"
)

func cp(addr, ver string, leader, vip bool) Node {
	return Node{Node: health.Node{Address: addr, Role: config.TypeControlPlane}, Hostname: "h" + addr, Version: ver, MemberID: 1, EtcdLeader: leader, VIPHolder: vip}
}

func worker(addr, ver string) Node {
	return Node{Node: health.Node{Address: addr, Role: config.TypeWorker}, Hostname: "h" + addr, Version: ver}
}

func TestMakePlan(t *testing.T) {
	for _, tc := range []struct {
		name    string
		nodes   []Node
		maxUnav int
		want    [][]string // addresses per step
		skipped []string
	}{
		{
			name:  "control planes first, the VIP holder and etcd leader last, then workers",
			nodes: []Node{worker("w1", "v1"), cp("c1", "v1", true, true), cp("c2", "v1", false, false), cp("c3", "v1", false, false)},
			want:  [][]string{{"c2"}, {"c3"}, {"c1"}, {"w1"}},
		},
		{
			name:  "the VIP holder goes after the etcd leader",
			nodes: []Node{cp("c1", "v1", false, true), cp("c2", "v1", true, false), cp("c3", "v1", false, false)},
			want:  [][]string{{"c3"}, {"c2"}, {"c1"}},
		},
		{
			name:    "workers in batches of max-unavailable, control planes still alone",
			nodes:   []Node{cp("c1", "v1", false, false), cp("c2", "v1", false, false), worker("w1", "v1"), worker("w2", "v1"), worker("w3", "v1")},
			maxUnav: 2,
			want:    [][]string{{"c1"}, {"c2"}, {"w1", "w2"}, {"w3"}},
		},
		{
			name:    "nodes on the target are skipped (a stopped rollout resumes)",
			nodes:   []Node{cp("c1", "v2", false, false), cp("c2", "v1", true, true), worker("w1", "v2"), worker("w2", "v1")},
			want:    [][]string{{"c2"}, {"w2"}},
			skipped: []string{"c1", "w1"},
		},
		{
			name:    "everything on the target: nothing to do",
			nodes:   []Node{cp("c1", "v2", true, true), worker("w1", "v2")},
			skipped: []string{"c1", "w1"},
		},
		{
			name:    "max-unavailable below 1 is 1",
			nodes:   []Node{worker("w1", "v1"), worker("w2", "v1")},
			maxUnav: 0,
			want:    [][]string{{"w1"}, {"w2"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := MakePlan(tc.nodes, "v2", tc.maxUnav)
			var got [][]string
			for _, s := range p.Steps {
				var addrs []string
				for _, n := range s.Nodes {
					addrs = append(addrs, n.Address)
				}
				got = append(got, addrs)
			}
			if !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("steps %v, want %v", got, tc.want)
			}
			var skipped []string
			for _, n := range p.Skipped {
				skipped = append(skipped, n.Address)
			}
			if !slices.Equal(skipped, tc.skipped) {
				t.Errorf("skipped %v, want %v", skipped, tc.skipped)
			}
		})
	}
}

func TestPlanPrint(t *testing.T) {
	p := MakePlan([]Node{cp("c1", "v1", true, true), cp("c2", "v1", false, false), worker("w1", "v2")}, "v2", 1)
	var b bytes.Buffer
	p.Print(&b, Options{})
	out := b.String()
	for _, want := range []string{
		"rolling upgrade to v2: 2 node(s) to upgrade, 1 already on it",
		"etcd leader, VIP holder: after the other control planes",
		"already on the target: skipped",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan does not say %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "c2") > strings.Index(out, "c1 ") {
		t.Errorf("c2 should be listed before c1:\n%s", out)
	}
}
