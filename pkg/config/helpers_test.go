package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

// Secrets that appear in the test configs; Redact must hide all of them.
const (
	testMachineToken = "abcdef.0123456789abcdef"
	testClusterToken = "123456.abcdefghijklmnop"
)

// testPKI holds base64-encoded PEM material minted for the tests.
type testPKI struct {
	machineCrt, machineKey       string
	clusterCrt, clusterKey       string
	aggregatorCrt, aggregatorKey string
	kubeletCrt, kubeletKey       string
	etcdCrt, etcdKey             string
	saKey                        string
	secretbox                    string
	leafCrt                      string // a certificate that is not a CA
	otherKey                     string // a key that matches no certificate
}

var (
	pkiOnce sync.Once
	pki     *testPKI
)

// getPKI mints (once per test binary) the certificates and keys used by
// the test configs.
func getPKI(tb testing.TB) *testPKI {
	tb.Helper()
	pkiOnce.Do(func() {
		p := &testPKI{}
		p.machineCrt, p.machineKey = mintCert(tb, "machine-ca", true)
		p.clusterCrt, p.clusterKey = mintCert(tb, "kubernetes-ca", true)
		p.aggregatorCrt, p.aggregatorKey = mintCert(tb, "front-proxy-ca", true)
		p.kubeletCrt, p.kubeletKey = mintCert(tb, "kubelet-serving-ca", true)
		p.etcdCrt, p.etcdKey = mintCert(tb, "etcd-ca", true)
		p.leafCrt, p.otherKey = mintCert(tb, "leaf", false)
		_, p.saKey = mintCert(tb, "service-accounts", true)
		p.secretbox = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
		pki = p
	})
	if pki == nil {
		tb.Fatal("test PKI could not be minted")
	}
	return pki
}

// mintCert returns a base64 PEM self-signed ECDSA certificate and its base64
// PEM PKCS #8 key.
func mintCert(tb testing.TB, cn string, isCA bool) (crt, key string) {
	tb.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		tb.Fatalf("create certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		tb.Fatalf("marshal key: %v", err)
	}
	enc := func(typ string, b []byte) string {
		return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}))
	}
	return enc("CERTIFICATE", der), enc("PRIVATE KEY", keyDER)
}

// secrets lists every secret value of the test configs.
func (p *testPKI) secrets() []string {
	return []string{
		testMachineToken, testClusterToken, p.machineKey, p.clusterKey,
		p.aggregatorKey, p.kubeletKey, p.etcdKey, p.saKey, p.secretbox,
	}
}

// render replaces the {{...}} placeholders of a config template.
func (p *testPKI) render(tmpl string) string {
	return strings.NewReplacer(
		"{{MACHINE_CA_CRT}}", p.machineCrt,
		"{{MACHINE_CA_KEY}}", p.machineKey,
		"{{CLUSTER_CA_CRT}}", p.clusterCrt,
		"{{CLUSTER_CA_KEY}}", p.clusterKey,
		"{{AGGREGATOR_CA_CRT}}", p.aggregatorCrt,
		"{{AGGREGATOR_CA_KEY}}", p.aggregatorKey,
		"{{KUBELET_CA_CRT}}", p.kubeletCrt,
		"{{KUBELET_CA_KEY}}", p.kubeletKey,
		"{{ETCD_CA_CRT}}", p.etcdCrt,
		"{{ETCD_CA_KEY}}", p.etcdKey,
		"{{SA_KEY}}", p.saKey,
		"{{SECRETBOX}}", p.secretbox,
		"{{LEAF_CRT}}", p.leafCrt,
		"{{OTHER_KEY}}", p.otherKey,
	).Replace(tmpl)
}

// controlPlaneTemplate is a valid control-plane config (once rendered).
const controlPlaneTemplate = `version: v1alpha1
machine:
  type: controlplane
  token: abcdef.0123456789abcdef
  ca:
    crt: {{MACHINE_CA_CRT}}
    key: {{MACHINE_CA_KEY}}
  certSANs:
    - cp1.example.com
    - 10.0.0.10
  network:
    hostname: cp1
    nameservers:
      - 1.1.1.1
      - 2606:4700:4700::1111
    interfaces:
      - interface: eth0
        addresses:
          - 10.0.0.10/24
        routes:
          - network: 0.0.0.0/0
            gateway: 10.0.0.1
            metric: 1024
        mtu: 1500
        vip:
          ip: 10.0.0.5
      - interface: eth1
        dhcp: true
  install:
    disk: /dev/sda
    image: ghcr.io/ballast-os/installer:v0.1.0
  kubelet:
    extraArgs:
      v: "2"
    nodeLabels:
      topology.kubernetes.io/zone: zone-a
      example.com/rack: r12
    nodeTaints:
      example.com/dedicated: infra:NoSchedule
cluster:
  name: demo
  controlPlane:
    endpoint: https://10.0.0.5:6443
  network:
    dnsDomain: cluster.local
    podSubnets:
      - 10.244.0.0/16
    serviceSubnets:
      - 10.96.0.0/12
  kubernetesVersion: v1.36.3
  token: 123456.abcdefghijklmnop
  secretboxEncryptionSecret: {{SECRETBOX}}
  ca:
    crt: {{CLUSTER_CA_CRT}}
    key: {{CLUSTER_CA_KEY}}
  aggregatorCA:
    crt: {{AGGREGATOR_CA_CRT}}
    key: {{AGGREGATOR_CA_KEY}}
  kubeletServingCA:
    crt: {{KUBELET_CA_CRT}}
    key: {{KUBELET_CA_KEY}}
  serviceAccount:
    key: {{SA_KEY}}
  etcd:
    ca:
      crt: {{ETCD_CA_CRT}}
      key: {{ETCD_CA_KEY}}
    peers:
      - 10.0.0.11
      - cp3.example.com:50000
    heartbeatInterval: 100ms
    electionTimeout: 1s
    quotaBackendBytes: 2147483648
    snapshotCount: 10000
    snapshots:
      interval: 1h
      keep: 5
  apiServer:
    extraArgs:
      audit-log-maxage: "30"
    certSANs:
      - api.example.com
  controllerManager:
    extraArgs:
      node-cidr-mask-size: "24"
`

// workerTemplate is a valid worker config (once rendered).
const workerTemplate = `version: v1alpha1
machine:
  type: worker
  token: abcdef.0123456789abcdef
  ca:
    crt: {{MACHINE_CA_CRT}}
  network:
    hostname: worker-1
    interfaces:
      - interface: eth0
        dhcp: true
  install:
    disk: /dev/nvme0n1
cluster:
  name: demo
  controlPlane:
    endpoint: https://api.example.com:6443
  token: 123456.abcdefghijklmnop
  ca:
    crt: {{CLUSTER_CA_CRT}}
`

// controlPlaneYAML and workerYAML return rendered valid configs.
func controlPlaneYAML(tb testing.TB) string { return getPKI(tb).render(controlPlaneTemplate) }
func workerYAML(tb testing.TB) string       { return getPKI(tb).render(workerTemplate) }

// edit is a textual change to a config template.
type edit struct{ old, new string }

// r builds an edit replacing old (which must occur exactly once) by new.
func r(old, new string) edit { return edit{old, new} }

// applyEdits applies edits to tmpl in order.
func applyEdits(tb testing.TB, tmpl string, edits []edit) string {
	tb.Helper()
	for _, e := range edits {
		if n := strings.Count(tmpl, e.old); n != 1 {
			tb.Fatalf("edit: %q occurs %d times in the template, want 1", e.old, n)
		}
		tmpl = strings.Replace(tmpl, e.old, e.new, 1)
	}
	return tmpl
}

// lineOf returns the 1-based line of the first occurrence of substr.
func lineOf(tb testing.TB, text, substr string) int {
	tb.Helper()
	i := strings.Index(text, substr)
	if i < 0 {
		tb.Fatalf("lineOf: %q not found", substr)
	}
	return strings.Count(text[:i], "\n") + 1
}

// mustDecode decodes a config that must be valid YAML for the schema.
func mustDecode(tb testing.TB, text string) *Config {
	tb.Helper()
	c, err := Decode([]byte(text))
	if err != nil {
		tb.Fatalf("Decode: %v", err)
	}
	return c
}
