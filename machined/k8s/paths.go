package k8s

import "path/filepath"

// ContainerDir is where a node's Kubernetes directory appears inside the
// component containers.
const ContainerDir = "/etc/kubernetes"

// Paths are the files of the control plane in one directory.
type Paths struct{ Dir string }

func (p Paths) file(name string) string { return filepath.Join(p.Dir, name) }

// In returns where the file name of the directory is seen inside a container.
func In(name string) string { return ContainerDir + "/" + name }

// File names in the directory.
const (
	caCrt               = "ca.crt"
	caKey               = "ca.key"
	frontProxyCACrt     = "front-proxy-ca.crt"
	kubeletServingCACrt = "kubelet-serving-ca.crt"
	kubeletServingCAKey = "kubelet-serving-ca.key"
	etcdCACrt           = "etcd-ca.crt"
	saKey               = "sa.key"
	saPub               = "sa.pub"
	encryptionConfig    = "encryption-config.yaml"
	auditPolicy         = "audit-policy.yaml"
	controllerManagerKC = "controller-manager.kubeconfig"
	schedulerKC         = "scheduler.kubeconfig"
	machinedKC          = "machined.kubeconfig"
)

// MachinedKubeconfig is machined's own admin kubeconfig (control planes).
func (p Paths) MachinedKubeconfig() string { return p.file(machinedKC) }
