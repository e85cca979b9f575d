// Package k8s runs the Kubernetes control plane of a control-plane node:
// it issues the components' certificates and kubeconfigs from the machine
// config (and renews them when a third of their lifetime is left), writes the
// encryption and audit configs, describes kube-apiserver,
// kube-controller-manager and kube-scheduler as containers for the
// supervisor, and probes their health.
//
// Files live in one directory per node (Paths), mounted read-only into the
// component containers at /etc/kubernetes.
package k8s
