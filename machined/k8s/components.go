package k8s

import (
	"fmt"
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
// etcdServers are the client URLs of every etcd member.
func Components(cfg *config.Config, n Node, p Paths, etcdServers []string) ([]Component, error) {
	podCIDR := strings.Join(cfg.Cluster.Network.PodSubnets, ",")
	svcCIDR := strings.Join(cfg.Cluster.Network.ServiceSubnets, ",")
	if len(etcdServers) == 0 {
		return nil, fmt.Errorf("no etcd servers")
	}
	apiserver := map[string]string{
		"advertise-address":                  n.AdvertiseIP,
		"bind-address":                       "0.0.0.0",
		"secure-port":                        fmt.Sprint(APIServerPort),
		"allow-privileged":                   "true",
		"authorization-mode":                 "Node,RBAC",
		"enable-admission-plugins":           "NodeRestriction",
		"enable-bootstrap-token-auth":        "true",
		"client-ca-file":                     In(caCrt),
		"tls-cert-file":                      In("apiserver.crt"),
		"tls-private-key-file":               In("apiserver.key"),
		"etcd-servers":                       strings.Join(etcdServers, ","),
		"etcd-cafile":                        In(etcdCACrt),
		"etcd-certfile":                      In("apiserver-etcd-client.crt"),
		"etcd-keyfile":                       In("apiserver-etcd-client.key"),
		"kubelet-certificate-authority":      In(caCrt),
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
	}
	cm := map[string]string{
		"kubeconfig":                       In(controllerManagerKC),
		"authentication-kubeconfig":        In(controllerManagerKC),
		"authorization-kubeconfig":         In(controllerManagerKC),
		"bind-address":                     "127.0.0.1",
		"secure-port":                      fmt.Sprint(ControllerManagerPort),
		"client-ca-file":                   In(caCrt),
		"cluster-name":                     cfg.Cluster.Name,
		"cluster-signing-cert-file":        In(caCrt),
		"cluster-signing-key-file":         In(caKey),
		"controllers":                      "*,bootstrapsigner,tokencleaner",
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
	// The apiserver and controller-manager see the directory; the
	// scheduler only its kubeconfig (no CA or service-account key).
	dirMount := []specs.Mount{{
		Destination: ContainerDir, Type: "bind", Source: p.Dir,
		Options: []string{"rbind", "ro"},
	}}
	schedMount := []specs.Mount{{
		Destination: In(schedulerKC), Type: "bind", Source: p.file(schedulerKC),
		Options: []string{"bind", "ro"},
	}}
	version := cfg.Cluster.KubernetesVersion
	mk := func(name string, c config.Component, flags map[string]string, mounts []specs.Mount) Component {
		img := c.Image
		if img == "" {
			img = images.Ref(name, version)
		}
		for k, v := range c.ExtraArgs {
			flags[k] = v
		}
		return Component{Name: name, Image: img, Args: Flags(flags), Mounts: mounts}
	}
	return []Component{
		mk(images.APIServer, cfg.Cluster.APIServer, apiserver, dirMount),
		mk(images.ControllerManager, cfg.Cluster.ControllerManager, cm, dirMount),
		mk(images.Scheduler, cfg.Cluster.Scheduler, sched, schedMount),
	}, nil
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
