package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ballast-os/ballast/pkg/config"
)

// k8sUpgradeFrom is the release the Kubernetes upgrade starts from (make
// kubernetes-releases builds it).
const k8sUpgradeFrom = "v1.36.1"

// k8sStepRE matches the per-node lines of upgrade-k8s: a component running
// the target, or a kubelet Ready on it.
var k8sStepRE = regexp.MustCompile(`(\S+) \(\S+\)\s+(kube-apiserver|components|kubelet)\s+(?:running \S+|kubelet \S+ Ready) after (\S+)`)

// measureK8sUpgrade creates a 3 CP + 1 W cluster on k8sUpgradeFrom and
// upgrades it to the pinned release with `nodectl upgrade-k8s` under the
// same clients as the rollout.
func measureK8sUpgrade() (rolloutResult, error) {
	to := config.DefaultKubernetesVersion
	bundleDir := filepath.Join(filepath.Dir(*binDir), "k8s", to, "bundle")
	if _, err := os.Stat(filepath.Join(bundleDir, "manifest.json")); err != nil {
		return rolloutResult{}, fmt.Errorf("%w (make kubernetes-releases)", err)
	}
	p, err := startProbedCluster("benchk8s", "10.94.0.0/24", "--kubernetes-version", k8sUpgradeFrom)
	if err != nil {
		return rolloutResult{}, err
	}
	defer p.close()
	r, out, err := p.measure("upgrade-k8s", "--to", to, "--bundle", bundleDir)
	if err != nil {
		return r, err
	}
	for _, m := range k8sStepRE.FindAllStringSubmatch(out, -1) {
		r.perNode = append(r.perNode, m[2]+" "+m[1]+": "+m[3])
	}
	fmt.Printf("upgrade-k8s %s → %s, 3 CP + 1 W: %s (%s); %s\n", k8sUpgradeFrom, to, r.total.Round(100*time.Millisecond), strings.Join(r.perNode, ", "), r.clients())
	return r, nil
}

func renderK8sUpgrade(r rolloutResult) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s `nodectl upgrade-k8s --to %s` of a netns cluster of 3 control planes and 1 worker created on %s, while a client creates a ConfigMap through the VIP every %s and the worker asks a Service of two web pods for its page. The release is staged on every node, then the apiservers, the controller-managers and schedulers, and the drained kubelets move one node at a time, live (no reboot); last the nodes' `cluster.kubernetesVersion` and kube-proxy. One round.\n\n", stamp(), config.DefaultKubernetesVersion, k8sUpgradeFrom, r.interval)
	b.WriteString("| figure | value |\n| --- | --: |\n")
	fmt.Fprintf(&b, "| upgrade, command to done | %s |\n", r.total.Round(100*time.Millisecond))
	fmt.Fprintf(&b, "| per step (phase, node: time to running the target / Ready), in order | %s |\n", strings.Join(r.perNode, ", "))
	r.clientRows(&b)
	b.WriteString("\nFor comparison: `talosctl upgrade-k8s` moves the same components in the same order (apiservers, controller-managers, schedulers, kubelets, then manifests) and publishes no timing; kubeadm upgrades one node per `kubeadm upgrade` call, the kubelet by the operator's package manager.\n")
	return b.String()
}
