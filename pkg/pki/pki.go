// Package pki creates and reads the certificate authorities and certificates
// Ballast uses: the OS (machine API) CA, the Kubernetes, etcd and front-proxy
// CAs, and the leaf certificates each node or client holds.
//
// Keys are ECDSA P-256. Certificates and keys travel PEM-encoded; in machine
// configs the PEM is additionally base64-encoded (see EncodeB64).
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Roles carried in the Organization of machine-API client certificates.
const (
	RoleAdmin      = "os:admin"
	RoleOperator   = "os:operator"
	RoleReader     = "os:reader"
	RoleEtcdBackup = "os:etcd:backup"
)

// AllRoles lists every machine-API role, most powerful first.
var AllRoles = []string{RoleAdmin, RoleOperator, RoleReader, RoleEtcdBackup}

// Node identities carried in the Organization of machine-API server
// certificates. A control-plane node mints its own certificate with the OS CA
// key and marks it NodeControlPlane; a worker's certificate is issued by a
// control-plane node against the machine token and is always marked
// NodeWorker, so a client that expects a control plane at an address can
// reject a worker's certificate there. Node certificates carry no role.
const (
	NodeControlPlane = "os:node:controlplane"
	NodeWorker       = "os:node:worker"
)

// NodeKind returns the node identity a machine-API server certificate
// carries (NodeControlPlane or NodeWorker), or "" when it has none.
func NodeKind(cert *x509.Certificate) string {
	for _, o := range cert.Subject.Organization {
		if o == NodeControlPlane || o == NodeWorker {
			return o
		}
	}
	return ""
}

// Validity periods.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
)

// ErrNoKey is returned when an operation needs a private key that is absent.
var ErrNoKey = errors.New("no private key")

// CertAndKey is a PEM certificate with an optional PEM private key.
type CertAndKey struct {
	Crt []byte
	Key []byte
}

// NewKey generates an ECDSA P-256 private key and returns it PEM-encoded.
func NewKey() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// NewCA creates a self-signed CA certificate and key.
func NewCA(commonName string, organization ...string) (*CertAndKey, error) {
	key, keyPEM, err := NewKey()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: organization},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate %q: %w", commonName, err)
	}
	return &CertAndKey{Crt: encodeCert(der), Key: keyPEM}, nil
}

// Usage says what a leaf certificate is for.
type Usage int

// Leaf certificate usages.
const (
	UsageServer Usage = 1 << iota
	UsageClient
)

// Request describes a leaf certificate to issue.
type Request struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Usage        Usage
	Validity     time.Duration // default LeafValidity
	// PublicKey, when set, is certified instead of a newly generated key (the
	// caller keeps the private key, e.g. a CSR from another node).
	PublicKey crypto.PublicKey
}

// Issue signs a leaf certificate with ca. Unless req.PublicKey is set, a new
// key is generated and returned with the certificate.
func Issue(ca *CertAndKey, req Request) (*CertAndKey, error) {
	caCert, err := ParseCert(ca.Crt)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if len(ca.Key) == 0 {
		return nil, fmt.Errorf("issue %q: CA %q: %w", req.CommonName, caCert.Subject.CommonName, ErrNoKey)
	}
	caKey, err := ParseKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	out := &CertAndKey{}
	pub := req.PublicKey
	if pub == nil {
		key, keyPEM, err := NewKey()
		if err != nil {
			return nil, err
		}
		pub, out.Key = key.Public(), keyPEM
	}
	validity := req.Validity
	if validity == 0 {
		validity = LeafValidity
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: req.Organization},
		NotBefore:    now.Add(-backdate(validity)),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPs,
	}
	if tmpl.NotAfter.After(caCert.NotAfter) {
		tmpl.NotAfter = caCert.NotAfter
	}
	if req.Usage&UsageServer != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Usage&UsageClient != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, pub, caKey)
	if err != nil {
		return nil, fmt.Errorf("issue certificate %q: %w", req.CommonName, err)
	}
	out.Crt = encodeCert(der)
	return out, nil
}

// backdate is how far before now a leaf is valid from, for clocks slightly
// behind: an hour, or a tenth of a short validity (so that a short-lived
// certificate's lifetime is still mostly ahead of it).
func backdate(validity time.Duration) time.Duration {
	return min(time.Hour, validity/10)
}

// ParseCert parses the first PEM CERTIFICATE block.
func ParseCert(pemBytes []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return c, nil
}

// ParseKey parses a PEM private key (PKCS#8, EC or PKCS#1).
func ParseKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM private key block")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	return s, nil
}

// Pool returns a cert pool holding the given PEM certificates.
func Pool(pems ...[]byte) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	for _, b := range pems {
		if !p.AppendCertsFromPEM(b) {
			return nil, errors.New("no certificate found in CA PEM")
		}
	}
	return p, nil
}

// Fingerprint is the SHA-256 of a certificate's SubjectPublicKeyInfo, in hex.
// It is what maintenance mode prints and `apply-config --cert-fingerprint` pins.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// EncodeB64 base64-encodes PEM for a machine config or nodeconfig field.
func EncodeB64(pemBytes []byte) string { return base64.StdEncoding.EncodeToString(pemBytes) }

// DecodeB64 reverses EncodeB64.
func DecodeB64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("base64: %w", err)
	}
	return b, nil
}

// KeyMatches reports whether keyPEM is the private key of certPEM.
func KeyMatches(certPEM, keyPEM []byte) bool {
	c, err := ParseCert(certPEM)
	if err != nil {
		return false
	}
	k, err := ParseKey(keyPEM)
	if err != nil {
		return false
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := k.Public().(equaler)
	return ok && pub.Equal(c.PublicKey)
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // never happens on Linux
	}
	return n
}

// Equal reports whether two PEM blobs hold the same bytes, ignoring surrounding space.
func Equal(a, b []byte) bool { return bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b)) }

// SelfSigned creates a self-signed server certificate (maintenance mode).
func SelfSigned(commonName string, dnsNames []string, ips []net.IP) (*CertAndKey, error) {
	key, keyPEM, err := NewKey()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(LeafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create self-signed certificate: %w", err)
	}
	return &CertAndKey{Crt: encodeCert(der), Key: keyPEM}, nil
}

// TLSCertificate converts c into a tls.Certificate.
func (c *CertAndKey) TLSCertificate() (tls.Certificate, error) {
	cert, err := tls.X509KeyPair(c.Crt, c.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load key pair: %w", err)
	}
	return cert, nil
}

// FromB64 decodes a base64 PEM certificate and (optional, may be empty) key,
// as machine configs and secrets bundles carry them.
func FromB64(crt, key string) (*CertAndKey, error) {
	c, err := DecodeB64(crt)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	out := &CertAndKey{Crt: c}
	if key != "" {
		if out.Key, err = DecodeB64(key); err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
	}
	return out, nil
}
