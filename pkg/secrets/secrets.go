// Package secrets holds a cluster's secrets bundle: every CA, key and token
// that `nodectl gen secrets` creates once and `gen config --with-secrets`
// reuses, so that configs can be regenerated without minting a new cluster.
package secrets

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/pki"
)

// Bundle is the content of secrets.yaml. PEM values are stored base64-encoded.
type Bundle struct {
	Secrets Values `yaml:"secrets"`
	Certs   Certs  `yaml:"certs"`
}

// Values are the non-certificate secrets.
type Values struct {
	// MachineToken lets workers obtain machine-API certificates.
	MachineToken string `yaml:"machineToken"`
	// BootstrapToken was the Kubernetes bootstrap token (before 0.17); it
	// is no longer generated or used.
	BootstrapToken string `yaml:"bootstrapToken,omitempty"`
	// SecretboxEncryptionSecret encrypts Kubernetes Secrets at rest.
	SecretboxEncryptionSecret string `yaml:"secretboxEncryptionSecret"`
}

// Certs are the cluster's CAs and signing keys.
type Certs struct {
	OS             Pair `yaml:"os"`
	Kubernetes     Pair `yaml:"k8s"`
	FrontProxy     Pair `yaml:"k8sAggregator"`
	KubeletServing Pair `yaml:"k8sKubeletServing"`
	Etcd           Pair `yaml:"etcd"`
	ServiceAccount Pair `yaml:"k8sServiceAccount"` // key only
}

// Pair is a base64 PEM certificate and key.
type Pair struct {
	Crt string `yaml:"crt,omitempty"`
	Key string `yaml:"key"`
}

// Generate creates a new bundle with fresh CAs, keys and tokens.
func Generate() (*Bundle, error) {
	b := &Bundle{}
	var err error
	if b.Secrets.MachineToken, err = Token(); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate secretbox key: %w", err)
	}
	b.Secrets.SecretboxEncryptionSecret = base64.StdEncoding.EncodeToString(key)

	cas := []struct {
		dst  *Pair
		name string
	}{
		{&b.Certs.OS, "ballast-os-ca"},
		{&b.Certs.Kubernetes, "kubernetes"},
		{&b.Certs.FrontProxy, "front-proxy-ca"},
		{&b.Certs.KubeletServing, "kubelet-serving-ca"},
		{&b.Certs.Etcd, "etcd-ca"},
	}
	for _, ca := range cas {
		c, err := pki.NewCA(ca.name, "ballast")
		if err != nil {
			return nil, fmt.Errorf("generate %s: %w", ca.name, err)
		}
		*ca.dst = Pair{Crt: pki.EncodeB64(c.Crt), Key: pki.EncodeB64(c.Key)}
	}
	_, saKey, err := pki.NewKey()
	if err != nil {
		return nil, fmt.Errorf("generate service-account key: %w", err)
	}
	b.Certs.ServiceAccount = Pair{Key: pki.EncodeB64(saKey)}
	return b, nil
}

// Token returns a random token in the bootstrap-token form abcdef.0123456789abcdef.
func Token() (string, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, 0, 23)
	buf := make([]byte, 1)
	for len(out) < 23 {
		if len(out) == 6 {
			out = append(out, '.')
			continue
		}
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("generate token: %w", err)
		}
		if int(buf[0]) >= 256-256%len(alphabet) {
			continue // rejection sampling keeps every character equally likely
		}
		out = append(out, alphabet[int(buf[0])%len(alphabet)])
	}
	return string(out), nil
}

// Validate checks that every secret is present and every CA key matches its cert.
func (b *Bundle) Validate() error {
	var errs []error
	required := []struct{ path, value string }{
		{"secrets.machineToken", b.Secrets.MachineToken},
		{"secrets.secretboxEncryptionSecret", b.Secrets.SecretboxEncryptionSecret},
		{"certs.k8sServiceAccount.key", b.Certs.ServiceAccount.Key},
	}
	for _, r := range required {
		if r.value == "" {
			errs = append(errs, fmt.Errorf("%s: missing", r.path))
		}
	}
	cas := []struct {
		name string
		p    Pair
	}{{"os", b.Certs.OS}, {"k8s", b.Certs.Kubernetes}, {"k8sAggregator", b.Certs.FrontProxy}, {"k8sKubeletServing", b.Certs.KubeletServing}, {"etcd", b.Certs.Etcd}}
	for _, ca := range cas {
		name, p := ca.name, ca.p
		crt, err1 := pki.DecodeB64(p.Crt)
		key, err2 := pki.DecodeB64(p.Key)
		switch {
		case p.Crt == "" || p.Key == "":
			errs = append(errs, fmt.Errorf("certs.%s: certificate and key are required", name))
		case err1 != nil || err2 != nil:
			errs = append(errs, fmt.Errorf("certs.%s: not base64-encoded PEM", name))
		case !pki.KeyMatches(crt, key):
			errs = append(errs, fmt.Errorf("certs.%s: key does not match certificate", name))
		}
	}
	return errors.Join(errs...)
}

// Load reads and validates a secrets.yaml.
func Load(path string) (*Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	b := &Bundle{}
	if err := dec.Decode(b); err != nil {
		return nil, fmt.Errorf("decode secrets %s: %w", path, err)
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("secrets %s: %w", path, err)
	}
	return b, nil
}

// Save writes the bundle atomically with mode 0600.
func (b *Bundle) Save(path string) error {
	data, err := yaml.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode secrets: %w", err)
	}
	return atomicfile.Write(path, data, 0o600)
}

// CA returns a decoded CA pair.
func (p Pair) CA() (*pki.CertAndKey, error) { return pki.FromB64(p.Crt, p.Key) }
