// Package gen generates a cluster's machine configs and client file from a
// secrets bundle: what `nodectl gen config` writes.
package gen

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/nodeconfig"
	"github.com/ballast-os/ballast/pkg/pki"
	"github.com/ballast-os/ballast/pkg/secrets"
)

// ErrInvalidOption marks a bad generation option.
var ErrInvalidOption = errors.New("invalid option")

// Options control config generation.
type Options struct {
	ClusterName string
	// Endpoint is the control-plane endpoint URL, e.g. https://10.5.0.2:6443.
	Endpoint          string
	KubernetesVersion string // default config.DefaultKubernetesVersion
	Secrets           *secrets.Bundle
	// Patches apply to both configs; the role-specific ones after them.
	Patches             []string
	ControlPlanePatches []string
	WorkerPatches       []string
}

// Output is what Generate produces.
type Output struct {
	ControlPlane []byte
	Worker       []byte
	NodeConfig   *nodeconfig.Config
}

// Generate builds controlplane.yaml, worker.yaml and an os:admin nodeconfig.
func Generate(opts Options) (*Output, error) {
	host, err := EndpointHost(opts.Endpoint)
	if err != nil {
		return nil, err
	}
	if opts.Secrets == nil {
		return nil, fmt.Errorf("%w: a secrets bundle is required", ErrInvalidOption)
	}
	s := opts.Secrets
	cp := base(opts)
	cp.Machine.Type = config.TypeControlPlane
	cp.Machine.CA = &config.CertAndKey{Crt: s.Certs.OS.Crt, Key: s.Certs.OS.Key}
	cp.Cluster.CA = &config.CertAndKey{Crt: s.Certs.Kubernetes.Crt, Key: s.Certs.Kubernetes.Key}
	cp.Cluster.AggregatorCA = &config.CertAndKey{Crt: s.Certs.FrontProxy.Crt, Key: s.Certs.FrontProxy.Key}
	cp.Cluster.KubeletServingCA = &config.CertAndKey{Crt: s.Certs.KubeletServing.Crt, Key: s.Certs.KubeletServing.Key}
	cp.Cluster.ServiceAccount = &config.Key{Key: s.Certs.ServiceAccount.Key}
	cp.Cluster.Etcd.CA = &config.CertAndKey{Crt: s.Certs.Etcd.Crt, Key: s.Certs.Etcd.Key}
	cp.Cluster.SecretboxEncryptionSecret = s.Secrets.SecretboxEncryptionSecret

	// Workers get certificates only: no CA private key leaves the control plane.
	w := base(opts)
	w.Machine.Type = config.TypeWorker
	w.Machine.CA = &config.CertAndKey{Crt: s.Certs.OS.Crt}
	w.Cluster.CA = &config.CertAndKey{Crt: s.Certs.Kubernetes.Crt}

	out := &Output{}
	if out.ControlPlane, err = render(cp, append(append([]string{}, opts.Patches...), opts.ControlPlanePatches...)); err != nil {
		return nil, fmt.Errorf("controlplane.yaml: %w", err)
	}
	if out.Worker, err = render(w, append(append([]string{}, opts.Patches...), opts.WorkerPatches...)); err != nil {
		return nil, fmt.Errorf("worker.yaml: %w", err)
	}
	out.NodeConfig, err = ClientConfig(s, opts.ClusterName, []string{host}, []string{pki.RoleAdmin})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func base(opts Options) *config.Config {
	c := &config.Config{Version: config.Version}
	c.Machine.Token = opts.Secrets.Secrets.MachineToken
	c.Cluster.Name = opts.ClusterName
	c.Cluster.ControlPlane.Endpoint = opts.Endpoint
	c.Cluster.KubernetesVersion = opts.KubernetesVersion
	if c.Cluster.KubernetesVersion == "" {
		c.Cluster.KubernetesVersion = config.DefaultKubernetesVersion
	}
	c.Cluster.Network = config.ClusterNet{
		DNSDomain:      config.DefaultDNSDomain,
		PodSubnets:     []string{config.DefaultPodSubnet},
		ServiceSubnets: []string{config.DefaultServiceSubnet},
	}
	return c
}

func render(c *config.Config, patches []string) ([]byte, error) {
	data, err := c.Bytes()
	if err != nil {
		return nil, err
	}
	if len(patches) > 0 {
		if data, err = config.ApplyPatches(data, patches); err != nil {
			return nil, err
		}
	}
	if _, err := config.Load(data); err != nil {
		return nil, err
	}
	return data, nil
}

// ClientConfig issues a client certificate with the given roles from the
// bundle's OS CA and wraps it in a nodeconfig with one context.
func ClientConfig(s *secrets.Bundle, contextName string, endpoints, roles []string) (*nodeconfig.Config, error) {
	for _, r := range roles {
		if !validRole(r) {
			return nil, fmt.Errorf("%w: unknown role %q (valid: %s)", ErrInvalidOption, r, strings.Join(pki.AllRoles, ", "))
		}
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("%w: at least one role is required", ErrInvalidOption)
	}
	ca, err := s.Certs.OS.CA()
	if err != nil {
		return nil, fmt.Errorf("OS CA: %w", err)
	}
	client, err := pki.Issue(ca, pki.Request{CommonName: "nodectl", Organization: roles, Usage: pki.UsageClient})
	if err != nil {
		return nil, fmt.Errorf("issue client certificate: %w", err)
	}
	return &nodeconfig.Config{
		Context: contextName,
		Contexts: map[string]*nodeconfig.Context{contextName: {
			Endpoints: endpoints,
			CA:        s.Certs.OS.Crt,
			Crt:       pki.EncodeB64(client.Crt),
			Key:       pki.EncodeB64(client.Key),
		}},
	}, nil
}

// EndpointHost validates a control-plane endpoint URL and returns its host.
func EndpointHost(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return "", fmt.Errorf("%w: endpoint %q must be an https URL such as https://10.5.0.2:6443", ErrInvalidOption, endpoint)
	}
	if p := u.Port(); p == "" {
		return "", fmt.Errorf("%w: endpoint %q has no port (the Kubernetes API listens on 6443)", ErrInvalidOption, endpoint)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil && strings.ContainsAny(u.Hostname(), " /") {
		return "", fmt.Errorf("%w: endpoint host %q is not a name or address", ErrInvalidOption, u.Hostname())
	}
	return u.Hostname(), nil
}

func validRole(r string) bool {
	for _, v := range pki.AllRoles {
		if r == v {
			return true
		}
	}
	return false
}
