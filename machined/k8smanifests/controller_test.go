package k8smanifests

import (
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/pkg/config"
)

// TestDecideManifests: the newer manifests win whichever control plane
// looks, so two control planes of different versions converge on the newer
// set instead of taking turns; a claim left half-done is taken over.
func TestDecideManifests(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	mine := k8s.ManifestsID{Revision: 2, KubernetesVersion: "v1.36.3", Version: "2-bbbb"}
	rec := func(id k8s.ManifestsID, applied bool, age time.Duration) *recorded {
		return &recorded{id: id, applied: applied, at: now.Add(-age)}
	}
	for _, tc := range []struct {
		name string
		rec  *recorded
		want manifestsDecision
	}{
		{"nothing recorded", nil, manifestsApply},
		{"same, applied", rec(mine, true, time.Hour), manifestsCurrent},
		{"an earlier revision (rev 1 record)", rec(parseRecord(map[string]string{"version": "1-aaaa", "applied": "2026-01-01T00:00:00Z"}).id, true, 0), manifestsApply},
		{"a later revision", rec(k8s.ManifestsID{Revision: 3, KubernetesVersion: "v1.36.1", Version: "3-0000"}, true, 0), manifestsOlder},
		{"a newer Kubernetes", rec(k8s.ManifestsID{Revision: 2, KubernetesVersion: "v1.36.10", Version: "2-0000"}, true, 0), manifestsOlder},
		{"an older Kubernetes", rec(k8s.ManifestsID{Revision: 2, KubernetesVersion: "v1.35.9", Version: "2-ffff"}, true, 0), manifestsApply},
		{"same revision and Kubernetes, other content: a stable tie-break", rec(k8s.ManifestsID{Revision: 2, KubernetesVersion: "v1.36.3", Version: "2-cccc"}, true, 0), manifestsOlder},
		{"the same being applied by another", rec(mine, false, 10*time.Second), manifestsBeingApplied},
		{"the same, claim abandoned", rec(mine, false, 10*time.Minute), manifestsApply},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideManifests(mine, tc.rec, now); got != tc.want {
				t.Fatalf("decide = %d, want %d", got, tc.want)
			}
			// The other side agrees: where mine applies over a complete
			// record, the record's owner would leave mine alone.
			if tc.rec != nil && tc.rec.applied && tc.want == manifestsApply {
				if back := decideManifests(tc.rec.id, &recorded{id: mine, applied: true}, now); back != manifestsOlder {
					t.Fatalf("the other control plane decides %d on our record, want to leave it", back)
				}
			}
		})
	}
}

// TestManifestKindsAreKnown: every kind the bootstrap manifests use can be
// applied by machined.
func TestManifestKindsAreKnown(t *testing.T) {
	cfg := &config.Config{}
	cfg.Cluster.Network.ServiceSubnets = []string{"10.96.0.0/12"}
	cfg.Cluster.KubernetesVersion = "v1.36.3"
	m, err := k8s.RenderManifests(cfg, "https://127.0.0.1:7445")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range m.Objects {
		if _, ok := resources[o.GetAPIVersion()+"/"+o.GetKind()]; !ok {
			t.Errorf("%s %s: kind unknown to machined", o.GetAPIVersion(), o.GetKind())
		}
	}
}
