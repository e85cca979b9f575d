package config

import (
	"regexp"
	"slices"
	"strings"
)

// KubeletOwnedFlags are the kubelet flags Ballast sets itself (paths,
// credentials, identity); machine.kubelet.extraArgs may not override them.
var KubeletOwnedFlags = []string{
	"bootstrap-kubeconfig", "cert-dir", "config", "container-runtime-endpoint",
	"hostname-override", "kubeconfig", "root-dir", "volume-plugin-dir",
}

// TaintEffects are the effects a node taint may have.
var TaintEffects = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}

var (
	labelNameRE   = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValueRE  = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
	labelPrefixRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
)

// kubeletAllowedLabels are the kubernetes.io / k8s.io labels a kubelet may
// set on its own node (the NodeRestriction admission plugin's list).
var kubeletAllowedLabels = []string{
	"kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os",
	"beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
	"failure-domain.beta.kubernetes.io/region", "failure-domain.beta.kubernetes.io/zone",
	"topology.kubernetes.io/region", "topology.kubernetes.io/zone",
}

func (v *validator) kubelet() {
	k := &v.c.Machine.Kubelet
	v.flags("machine.kubelet.extraArgs", k.ExtraArgs)
	if k.Version != "" && !kubernetesVersionRE.MatchString(k.Version) {
		v.addf("machine.kubelet.version", "%q is not a valid Kubernetes version (want e.g. %s)", k.Version, DefaultKubernetesVersion)
	}
	for _, name := range sortedKeys(k.ExtraArgs) {
		if slices.Contains(KubeletOwnedFlags, name) {
			v.addf(mapKeyPath("machine.kubelet.extraArgs", name), "--%s is set by Ballast and cannot be overridden", name)
		}
	}
	for _, key := range sortedKeys(k.NodeLabels) {
		p := mapKeyPath("machine.kubelet.nodeLabels", key)
		if msg := labelKeyProblem(key); msg != "" {
			v.addf(p, "%s", msg)
			continue
		}
		if !labelValueRE.MatchString(k.NodeLabels[key]) {
			v.addf(p, "%q is not a valid label value (at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit)", k.NodeLabels[key])
			continue
		}
		if prefix, _, ok := strings.Cut(key, "/"); ok && isKubernetesDomain(prefix) &&
			!slices.Contains(kubeletAllowedLabels, key) && !strings.HasPrefix(prefix, "kubelet.kubernetes.io") && !strings.HasPrefix(prefix, "node.kubernetes.io") {
			v.addf(p, "a kubelet may not set %q on its own node (allowed under kubernetes.io: %s, kubelet.kubernetes.io/*, node.kubernetes.io/*)", key, strings.Join(kubeletAllowedLabels, ", "))
		}
	}
	for _, key := range sortedKeys(k.NodeTaints) {
		p := mapKeyPath("machine.kubelet.nodeTaints", key)
		if msg := labelKeyProblem(key); msg != "" {
			v.addf(p, "%s", msg)
			continue
		}
		value, effect, ok := strings.Cut(k.NodeTaints[key], ":")
		switch {
		case !ok || !slices.Contains(TaintEffects, effect):
			v.addf(p, "%q: want \"value:Effect\" or \":Effect\" with Effect one of %s", k.NodeTaints[key], strings.Join(TaintEffects, ", "))
		case !labelValueRE.MatchString(value):
			v.addf(p, "taint value %q is not valid (at most 63 letters, digits, '-', '_' and '.')", value)
		}
	}
}

// labelKeyProblem describes what is wrong with a label or taint key ("" if
// nothing): [prefix/]name, the prefix a DNS subdomain.
func labelKeyProblem(key string) string {
	prefix, name, ok := strings.Cut(key, "/")
	if !ok {
		prefix, name = "", key
	}
	switch {
	case ok && (len(prefix) > 253 || !labelPrefixRE.MatchString(prefix)):
		return "prefix " + prefix + " is not a DNS subdomain"
	case !labelNameRE.MatchString(name):
		return "name " + `"` + name + `"` + " is not valid (at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit)"
	}
	return ""
}

func isKubernetesDomain(prefix string) bool {
	for _, d := range []string{"kubernetes.io", "k8s.io"} {
		if prefix == d || strings.HasSuffix(prefix, "."+d) {
			return true
		}
	}
	return false
}
