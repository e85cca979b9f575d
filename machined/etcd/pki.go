package etcd

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/pki"
)

// pkiPaths are the member's certificate files.
type pkiPaths struct {
	ca, serverCrt, serverKey, peerCrt, peerKey, clientCrt, clientKey string
}

func newPKIPaths(dir string) pkiPaths {
	j := func(n string) string { return filepath.Join(dir, n) }
	return pkiPaths{
		ca: j("ca.crt"), serverCrt: j("server.crt"), serverKey: j("server.key"),
		peerCrt: j("peer.crt"), peerKey: j("peer.key"), clientCrt: j("client.crt"), clientKey: j("client.key"),
	}
}

// mintCerts issues this member's server, peer and client certificates from
// the etcd CA in the config. Every node mints its own; keys are 0600.
func (m *Manager) mintCerts(cfg *config.Config, id identity) error {
	ca, err := etcdCA(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.opts.PKIDir, 0o700); err != nil {
		return fmt.Errorf("create etcd pki dir: %w", err)
	}
	ips := append([]net.IP{net.ParseIP(id.ip), net.ParseIP("127.0.0.1")}, otherAddresses(id.ip)...)
	dns := []string{id.name, "localhost"}
	issue := []struct {
		crt, key string
		req      pki.Request
	}{
		{m.pki.serverCrt, m.pki.serverKey, pki.Request{CommonName: id.name, DNSNames: dns, IPs: ips, Usage: pki.UsageServer | pki.UsageClient}},
		{m.pki.peerCrt, m.pki.peerKey, pki.Request{CommonName: id.name, DNSNames: dns, IPs: ips, Usage: pki.UsageServer | pki.UsageClient}},
		{m.pki.clientCrt, m.pki.clientKey, pki.Request{CommonName: "machined-" + id.name, Usage: pki.UsageClient}},
	}
	m.mu.Lock()
	m.tlsConf = nil // re-read the new files on next use
	m.mu.Unlock()
	if err := atomicfile.Write(m.pki.ca, ca.Crt, 0o644); err != nil {
		return err
	}
	for _, i := range issue {
		ck, err := pki.Issue(ca, i.req)
		if err != nil {
			return fmt.Errorf("issue etcd certificate: %w", err)
		}
		if err := atomicfile.Write(i.crt, ck.Crt, 0o644); err != nil {
			return err
		}
		if err := atomicfile.Write(i.key, ck.Key, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func etcdCA(cfg *config.Config) (*pki.CertAndKey, error) {
	if cfg.Cluster.Etcd.CA == nil || cfg.Cluster.Etcd.CA.Key == "" {
		return nil, fmt.Errorf("cluster.etcd.ca with its key is required on control-plane nodes")
	}
	ca, err := pki.FromB64(cfg.Cluster.Etcd.CA.Crt, cfg.Cluster.Etcd.CA.Key)
	if err != nil {
		return nil, fmt.Errorf("cluster.etcd.ca: %w", err)
	}
	return ca, nil
}

// clientTLS is the TLS configuration of this node's etcd client, read from
// the minted files once.
func (m *Manager) clientTLS() (*tls.Config, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tlsConf != nil {
		return m.tlsConf, nil
	}
	caPEM, err := os.ReadFile(m.pki.ca)
	if err != nil {
		return nil, fmt.Errorf("read etcd CA: %w", err)
	}
	pool, err := pki.Pool(caPEM)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(m.pki.clientCrt, m.pki.clientKey)
	if err != nil {
		return nil, fmt.Errorf("load etcd client certificate: %w", err)
	}
	m.tlsConf = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	return m.tlsConf, nil
}

// newClient returns an etcd client for endpoints.
func (m *Manager) newClient(endpoints []string) (*clientv3.Client, error) {
	tlsConf, err := m.clientTLS()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		TLS:                  tlsConf,
		DialTimeout:          3 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               zapLogger(discard{}),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return cli, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// ClientCert issues a client certificate for stock etcdctl.
func (m *Manager) ClientCert() (ca, crt, key []byte, endpoints []string, err error) {
	cfg := m.config()
	if cfg == nil {
		return nil, nil, nil, nil, ErrNotControlPlane
	}
	c, err := etcdCA(cfg)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ck, err := pki.Issue(c, pki.Request{CommonName: "etcdctl", Usage: pki.UsageClient})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return c.Crt, ck.Crt, ck.Key, []string{m.clientURL()}, nil
}

// otherAddresses are the machine's global unicast addresses besides the
// advertised one. etcd checks that a peer's certificate names the address
// the peer connects from, and the kernel picks a link's primary address as
// the source: with a static address added next to a DHCP lease, the member
// advertises the static one and dials from the lease.
func otherAddresses(advertised string) []net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []net.IP
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsGlobalUnicast() && ipn.IP.String() != advertised {
			out = append(out, ipn.IP)
		}
	}
	return out
}
