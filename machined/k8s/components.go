package k8s

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/images"
)

// Ports of the components on the node.
const (
	APIServerPort         = 6443
	ControllerManagerPort = 10257
	SchedulerPort         = 10259
)

// Component is one control-plane component as a container.
type Component struct {
	Name   string
	Image  string
	Args   []string
	Mounts []specs.Mount
}

// Components returns the three control-plane components of the node, with
// their flags built from the config (extraArgs win over Ballast's own).
func Components(cfg *config.Config, n Node, p Paths) ([]Component, error) {
	podCIDR := strings.Join(cfg.Cluster.Network.PodSubnets, ",")
	svcCIDR := strings.Join(cfg.Cluster.Network.ServiceSubnets, ",")
	if n.EtcdServer == "" {
		return nil, fmt.Errorf("no etcd server")
	}
	apiserver := map[string]string{
		"advertise-address":        n.AdvertiseIP,
		"bind-address":             "0.0.0.0",
		"secure-port":              fmt.Sprint(APIServerPort),
		"allow-privileged":         "true",
		"authorization-mode":       "Node,RBAC",
		"enable-admission-plugins": "NodeRestriction",
		// Kubelets get their client certificates from a control plane over
		// the machine API: no bearer token can join a node.
		"enable-bootstrap-token-auth":        "false",
		"client-ca-file":                     In(caCrt),
		"tls-cert-file":                      In("apiserver.crt"),
		"tls-private-key-file":               In("apiserver.key"),
		"etcd-servers":                       n.EtcdServer,
		"etcd-cafile":                        In(etcdCACrt),
		"etcd-certfile":                      In("apiserver-etcd-client.crt"),
		"etcd-keyfile":                       In("apiserver-etcd-client.key"),
		"kubelet-certificate-authority":      In(kubeletServingCACrt),
		"kubelet-client-certificate":         In("apiserver-kubelet-client.crt"),
		"kubelet-client-key":                 In("apiserver-kubelet-client.key"),
		"kubelet-preferred-address-types":    "InternalIP,ExternalIP,Hostname",
		"proxy-client-cert-file":             In("front-proxy-client.crt"),
		"proxy-client-key-file":              In("front-proxy-client.key"),
		"requestheader-client-ca-file":       In(frontProxyCACrt),
		"requestheader-allowed-names":        "front-proxy-client",
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-username-headers":     "X-Remote-User",
		"service-account-issuer":             "https://kubernetes.default.svc." + cfg.Cluster.Network.DNSDomain,
		"service-account-key-file":           In(saPub),
		"service-account-signing-key-file":   In(saKey),
		"service-cluster-ip-range":           svcCIDR,
		"encryption-provider-config":         In(encryptionConfig),
		"audit-policy-file":                  In(auditPolicy),
		"audit-log-path":                     "-",
		"profiling":                          "false",
		// On SIGTERM, answer what arrives while in-flight requests drain
		// with Retry-After, then close the remaining connections (watches
		// of other nodes' clients) within 2 s instead of waiting up to the
		// 60 s request timeout: a restart or reboot is then seconds, not
		// the 15 s grace period and a SIGKILL.
		"shutdown-send-retry-after": "true",
	}
	cm := map[string]string{
		"kubeconfig":                In(controllerManagerKC),
		"authentication-kubeconfig": In(controllerManagerKC),
		"authorization-kubeconfig":  In(controllerManagerKC),
		"bind-address":              "127.0.0.1",
		"secure-port":               fmt.Sprint(ControllerManagerPort),
		"client-ca-file":            In(caCrt),
		"cluster-name":              cfg.Cluster.Name,
		// One signer per trust: kubelet serving certificates from their own
		// CA (the apiserver trusts kubelets through it, no client trusts it
		// for the apiserver); client certificates from the cluster CA the
		// apiserver authenticates clients with. The legacy-unknown signer
		// stays off.
		"cluster-signing-kubelet-serving-cert-file":       In(kubeletServingCACrt),
		"cluster-signing-kubelet-serving-key-file":        In(kubeletServingCAKey),
		"cluster-signing-kubelet-client-cert-file":        In(caCrt),
		"cluster-signing-kubelet-client-key-file":         In(caKey),
		"cluster-signing-kube-apiserver-client-cert-file": In(caCrt),
		"cluster-signing-kube-apiserver-client-key-file":  In(caKey),
		// tokencleaner deletes expired bootstrap-token Secrets (Ballast
		// issues none, but one an operator made must not outlive itself).
		"controllers":                      "*,tokencleaner",
		"leader-elect":                     "true",
		"root-ca-file":                     In(caCrt),
		"service-account-private-key-file": In(saKey),
		"use-service-account-credentials":  "true",
		"allocate-node-cidrs":              "true",
		"cluster-cidr":                     podCIDR,
		"service-cluster-ip-range":         svcCIDR,
		"profiling":                        "false",
	}
	sched := map[string]string{
		"kubeconfig":                In(schedulerKC),
		"authentication-kubeconfig": In(schedulerKC),
		"authorization-kubeconfig":  In(schedulerKC),
		"bind-address":              "127.0.0.1",
		"secure-port":               fmt.Sprint(SchedulerPort),
		"leader-elect":              "true",
		"profiling":                 "false",
	}
	version := cfg.Cluster.KubernetesVersion
	mk := func(name string, c config.Component, flags map[string]string) Component {
		img := c.Image
		if img == "" {
			img = images.Ref(name, version)
		}
		// Least privilege: the container sees exactly the files Ballast's
		// own flags name, each read-only (extraArgs cannot widen it).
		mounts := fileMounts(p, flags)
		for k, v := range c.ExtraArgs {
			flags[k] = v
		}
		return Component{Name: name, Image: img, Args: Flags(flags), Mounts: mounts}
	}
	return []Component{
		mk(images.APIServer, cfg.Cluster.APIServer, apiserver),
		mk(images.ControllerManager, cfg.Cluster.ControllerManager, cm),
		mk(images.Scheduler, cfg.Cluster.Scheduler, sched),
	}, nil
}

// fileMounts bind-mounts, read-only, each file of the Kubernetes directory
// that a flag names, and nothing else of it. A file replaced later (a
// renewal writes a new inode) reaches the component when it restarts,
// which Sync asks for.
func fileMounts(p Paths, flags map[string]string) []specs.Mount {
	var names []string
	for _, v := range flags {
		if name, ok := strings.CutPrefix(v, ContainerDir+"/"); ok && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	out := make([]specs.Mount, 0, len(names))
	for _, name := range names {
		out = append(out, specs.Mount{Destination: In(name), Type: "bind", Source: p.file(name), Options: []string{"bind", "ro"}})
	}
	return out
}

// Flags renders flags as --name=value, sorted by name.
func Flags(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, "--"+k+"="+v)
	}
	sort.Strings(out)
	return out
}
