package k8s

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/images"
	"github.com/ballast-os/ballast/pkg/kubeconfig"
	"github.com/ballast-os/ballast/pkg/pki"
)

// Node is what the control plane's files depend on besides the config.
type Node struct {
	// Name is the node's name (its hostname).
	Name string
	// AdvertiseIP is the address the apiserver advertises.
	AdvertiseIP string
	// LocalEndpoint is the node's API load balancer (https://127.0.0.1:7445),
	// which the controller-manager and scheduler talk to.
	LocalEndpoint string
	// EtcdServer is the client URL of the node's own etcd member, the only
	// one its apiserver talks to (as kubeadm's stacked topology does): an
	// apiserver whose member is down or cut off is not ready, and the
	// load balancers and the VIP go around it.
	EtcdServer string
}

// ErrMissingSecret is returned when the config lacks a CA or key the
// control plane needs.
var ErrMissingSecret = errors.New("missing secret")

// leaf is a certificate the node issues for its components.
type leaf struct {
	// name is the file base (name.crt, name.key) or the kubeconfig file.
	name string
	// kubeconfig: the certificate is embedded in a kubeconfig file.
	kubeconfig bool
	ca         func(*config.Config) (*pki.CertAndKey, error)
	req        func(*config.Config, Node) pki.Request
	// users are the components to restart when it changes.
	users []string
}

// Renewal reports the earliest time a certificate is due for renewal.
type Renewal struct {
	// Changed lists the components whose files changed, in restart order.
	Changed []string
	// Next is when the next certificate is due.
	Next time.Time
}

func leaves() []leaf {
	return []leaf{
		{name: "apiserver", ca: kubernetesCA, req: apiserverRequest, users: []string{images.APIServer}},
		{name: "apiserver-kubelet-client", ca: kubernetesCA, users: []string{images.APIServer}, req: func(*config.Config, Node) pki.Request {
			return pki.Request{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Usage: pki.UsageClient}
		}},
		{name: "apiserver-etcd-client", ca: etcdCA, users: []string{images.APIServer}, req: func(*config.Config, Node) pki.Request {
			return pki.Request{CommonName: "kube-apiserver-etcd-client", Usage: pki.UsageClient}
		}},
		{name: "front-proxy-client", ca: frontProxyCA, users: []string{images.APIServer}, req: func(*config.Config, Node) pki.Request {
			return pki.Request{CommonName: "front-proxy-client", Usage: pki.UsageClient}
		}},
		{name: controllerManagerKC, kubeconfig: true, ca: kubernetesCA, users: []string{images.ControllerManager}, req: func(*config.Config, Node) pki.Request {
			return pki.Request{CommonName: "system:kube-controller-manager", Usage: pki.UsageClient}
		}},
		// machined's own client on control planes: it applies the cluster's
		// bootstrap manifests (RBAC included) and approves kubelet serving
		// certificates, so it is a cluster admin like kubeadm's.
		{name: machinedKC, kubeconfig: true, ca: kubernetesCA, req: func(*config.Config, Node) pki.Request {
			return pki.Request{CommonName: "ballast:machined", Organization: []string{"system:masters"}, Usage: pki.UsageClient}
		}},
		{name: schedulerKC, kubeconfig: true, ca: kubernetesCA, users: []string{images.Scheduler}, req: func(*config.Config, Node) pki.Request {
			return pki.Request{CommonName: "system:kube-scheduler", Usage: pki.UsageClient}
		}},
	}
}

// APIServerSANs are the names and addresses of the apiserver's serving
// certificate: the endpoint's host, the node's address and name, loopback,
// the in-cluster names, the first service IP and apiServer.certSANs.
func APIServerSANs(cfg *config.Config, n Node) ([]string, []net.IP) {
	dns := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc." + cfg.Cluster.Network.DNSDomain, "localhost"}
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	add := func(s string) {
		if s == "" {
			return
		}
		if ip := net.ParseIP(s); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		} else if !slices.Contains(dns, s) {
			dns = append(dns, s)
		}
	}
	add(n.Name)
	add(n.AdvertiseIP)
	if u, err := url.Parse(cfg.Cluster.ControlPlane.Endpoint); err == nil {
		add(u.Hostname())
	}
	for _, iface := range cfg.Machine.Network.Interfaces {
		if iface.VIP != nil {
			add(iface.VIP.IP)
		}
	}
	if ip, err := FirstServiceIP(cfg); err == nil {
		add(ip.String())
	}
	for _, s := range cfg.Cluster.APIServer.CertSANs {
		add(s)
	}
	return dns, ips
}

// FirstServiceIP is the kubernetes Service's ClusterIP: the first address of
// the first service subnet.
func FirstServiceIP(cfg *config.Config) (net.IP, error) { return serviceIP(cfg, 1) }

// serviceIP is the nth address of the first service subnet.
func serviceIP(cfg *config.Config, nth int) (net.IP, error) {
	if len(cfg.Cluster.Network.ServiceSubnets) == 0 {
		return nil, fmt.Errorf("cluster.network.serviceSubnets is empty")
	}
	p, err := netip.ParsePrefix(cfg.Cluster.Network.ServiceSubnets[0])
	if err != nil {
		return nil, fmt.Errorf("cluster.network.serviceSubnets[0]: %w", err)
	}
	a := p.Masked().Addr()
	for range nth {
		a = a.Next()
	}
	return net.IP(a.AsSlice()), nil
}

func apiserverRequest(cfg *config.Config, n Node) pki.Request {
	dns, ips := APIServerSANs(cfg, n)
	return pki.Request{CommonName: "kube-apiserver", DNSNames: dns, IPs: ips, Usage: pki.UsageServer}
}

func kubernetesCA(cfg *config.Config) (*pki.CertAndKey, error) {
	return caFrom("cluster.ca", cfg.Cluster.CA)
}

func frontProxyCA(cfg *config.Config) (*pki.CertAndKey, error) {
	return caFrom("cluster.aggregatorCA", cfg.Cluster.AggregatorCA)
}

func kubeletServingCA(cfg *config.Config) (*pki.CertAndKey, error) {
	return caFrom("cluster.kubeletServingCA", cfg.Cluster.KubeletServingCA)
}

func etcdCA(cfg *config.Config) (*pki.CertAndKey, error) {
	return caFrom("cluster.etcd.ca", cfg.Cluster.Etcd.CA)
}

func caFrom(path string, ck *config.CertAndKey) (*pki.CertAndKey, error) {
	if ck == nil || ck.Key == "" {
		return nil, fmt.Errorf("%w: %s with its key is required on control-plane nodes", ErrMissingSecret, path)
	}
	ca, err := pki.FromB64(ck.Crt, ck.Key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ca, nil
}

// Sync brings the directory up to date with cfg at time now: it writes the
// CA certificates, service-account keys, encryption and audit configs when
// they differ, and issues each certificate that is missing, signed by
// another CA, names other addresses than it should, outlives the configured
// lifetime, or has a third of its lifetime or less left. It reports the
// components whose files changed and when the next certificate is due.
func Sync(p Paths, cfg *config.Config, n Node, now time.Time) (Renewal, error) {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return Renewal{}, fmt.Errorf("kubernetes dir: %w", err)
	}
	changed := map[string]bool{}
	statics, err := staticFiles(cfg)
	if err != nil {
		return Renewal{}, err
	}
	for _, f := range statics {
		did, err := writeIfChanged(p.file(f.name), f.data, f.mode)
		if err != nil {
			return Renewal{}, err
		}
		if did {
			for _, u := range f.users {
				changed[u] = true
			}
		}
	}
	lifetime := cfg.Cluster.CertificateLifetime.Std()
	if lifetime == 0 {
		lifetime = config.DefaultCertificateLifetime.Std()
	}
	var next time.Time
	for _, l := range leaves() {
		ca, err := l.ca(cfg)
		if err != nil {
			return Renewal{}, err
		}
		req := l.req(cfg, n)
		req.Validity = lifetime
		due, err := dueAt(p, l, n, ca, req, now)
		if err != nil || !due.After(now) {
			if err := issue(p, l, cfg, n, ca, req); err != nil {
				return Renewal{}, err
			}
			for _, u := range l.users {
				changed[u] = true
			}
			if due, err = dueAt(p, l, n, ca, req, now); err != nil {
				return Renewal{}, fmt.Errorf("certificate %s just issued: %w", l.name, err)
			}
		}
		if next.IsZero() || due.Before(next) {
			next = due
		}
	}
	r := Renewal{Next: next}
	// Restart order: the components that depend on the apiserver first, the
	// apiserver last, so that a node's components come back against it.
	for _, c := range []string{images.Scheduler, images.ControllerManager, images.APIServer} {
		if changed[c] {
			r.Changed = append(r.Changed, c)
		}
	}
	return r, nil
}

// dueAt reads the certificate of l and returns when it must be renewed:
// when a third of its lifetime is left, or now when it does not match req
// and ca, or lives longer than req.Validity from now.
func dueAt(p Paths, l leaf, n Node, ca *pki.CertAndKey, req pki.Request, now time.Time) (time.Time, error) {
	crtPEM, keyPEM, server, err := readLeaf(p, l)
	if err != nil {
		return time.Time{}, err
	}
	if l.kubeconfig && server != n.LocalEndpoint {
		return time.Time{}, errors.New("server differs")
	}
	cert, err := pki.ParseCert(crtPEM)
	if err != nil {
		return time.Time{}, err
	}
	if keyPEM != nil && !pki.KeyMatches(crtPEM, keyPEM) {
		return time.Time{}, errors.New("key does not match")
	}
	pool, err := pki.Pool(ca.Crt)
	if err != nil {
		return time.Time{}, err
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return time.Time{}, fmt.Errorf("not valid under the current CA: %w", err)
	}
	if cert.Subject.CommonName != req.CommonName || !sameStrings(cert.DNSNames, req.DNSNames) || !sameIPs(cert.IPAddresses, req.IPs) {
		return time.Time{}, errors.New("names differ from the config")
	}
	if cert.NotAfter.After(now.Add(req.Validity + time.Minute)) {
		return time.Time{}, errors.New("outlives the configured lifetime")
	}
	return RenewAt(cert), nil
}

// RenewAt is when a certificate has a third of its lifetime left.
func RenewAt(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter.Add(-life / 3)
}

func readLeaf(p Paths, l leaf) (crt, key []byte, server string, err error) {
	if l.kubeconfig {
		data, err := os.ReadFile(p.file(l.name))
		if err != nil {
			return nil, nil, "", err
		}
		server, crt, err := kubeconfig.ClientCert(data)
		return crt, nil, server, err
	}
	if crt, err = os.ReadFile(p.file(l.name + ".crt")); err != nil {
		return nil, nil, "", err
	}
	if key, err = os.ReadFile(p.file(l.name + ".key")); err != nil {
		return nil, nil, "", err
	}
	return crt, key, "", nil
}

func issue(p Paths, l leaf, cfg *config.Config, n Node, ca *pki.CertAndKey, req pki.Request) error {
	ck, err := pki.Issue(ca, req)
	if err != nil {
		return fmt.Errorf("issue %s: %w", l.name, err)
	}
	if l.kubeconfig {
		// Components reach the apiserver through the node's load balancer.
		kc, err := kubeconfig.New(cfg.Cluster.Name, n.LocalEndpoint, ca.Crt, ck.Crt, ck.Key, req.CommonName)
		if err != nil {
			return err
		}
		return atomicfile.Write(p.file(l.name), kc, 0o600)
	}
	// Key first: a crash between the two leaves a mismatched pair, which
	// the next Sync sees (key does not match) and issues again.
	if err := atomicfile.Write(p.file(l.name+".key"), ck.Key, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(p.file(l.name+".crt"), ck.Crt, 0o644)
}

type staticFile struct {
	name  string
	data  []byte
	mode  os.FileMode
	users []string
}

func staticFiles(cfg *config.Config) ([]staticFile, error) {
	k8sCA, err := kubernetesCA(cfg)
	if err != nil {
		return nil, err
	}
	fpCA, err := frontProxyCA(cfg)
	if err != nil {
		return nil, err
	}
	eCA, err := etcdCA(cfg)
	if err != nil {
		return nil, err
	}
	kCA, err := kubeletServingCA(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Cluster.ServiceAccount == nil || cfg.Cluster.ServiceAccount.Key == "" {
		return nil, fmt.Errorf("%w: cluster.serviceAccount.key is required on control-plane nodes", ErrMissingSecret)
	}
	saPEM, err := pki.DecodeB64(cfg.Cluster.ServiceAccount.Key)
	if err != nil {
		return nil, fmt.Errorf("cluster.serviceAccount.key: %w", err)
	}
	key, err := pki.ParseKey(saPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster.serviceAccount.key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("service-account public key: %w", err)
	}
	enc, err := EncryptionConfig(cfg.Cluster.SecretboxEncryptionSecret)
	if err != nil {
		return nil, err
	}
	all := []string{images.APIServer, images.ControllerManager, images.Scheduler}
	return []staticFile{
		{caCrt, k8sCA.Crt, 0o644, all},
		{caKey, k8sCA.Key, 0o600, []string{images.ControllerManager}},
		{frontProxyCACrt, fpCA.Crt, 0o644, []string{images.APIServer}},
		{kubeletServingCACrt, kCA.Crt, 0o644, []string{images.APIServer, images.ControllerManager}},
		{kubeletServingCAKey, kCA.Key, 0o600, []string{images.ControllerManager}},
		{etcdCACrt, eCA.Crt, 0o644, []string{images.APIServer}},
		{saKey, saPEM, 0o600, []string{images.APIServer, images.ControllerManager}},
		{saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644, []string{images.APIServer}},
		{encryptionConfig, enc, 0o600, []string{images.APIServer}},
		{auditPolicy, []byte(AuditPolicy), 0o644, []string{images.APIServer}},
	}, nil
}

// writeIfChanged writes data when the file's content differs, and reports
// whether it wrote.
func writeIfChanged(path string, data []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, os.Chmod(path, mode)
	}
	return true, atomicfile.Write(path, data, mode)
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

func sameIPs(a, b []net.IP) bool {
	if len(a) != len(b) {
		return false
	}
	for _, ip := range b {
		if !slices.ContainsFunc(a, ip.Equal) {
			return false
		}
	}
	return true
}
