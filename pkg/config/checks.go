package config

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// tokenRE is the format of machine and bootstrap tokens.
var tokenRE = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)

// kubernetesVersionRE accepts versions like v1.36.3, 1.36.3, v1.37.0-rc.1.
var kubernetesVersionRE = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// isDNSLabel reports whether s is an RFC 1123 label: at most 63 lowercase
// letters, digits and '-', starting and ending with a letter or digit.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// isDNSName reports whether s is an RFC 1123 subdomain: dot-separated
// labels, at most 253 characters.
func isDNSName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !isDNSLabel(label) {
			return false
		}
	}
	return true
}

// isHost reports whether s is an IP address or a DNS name.
func isHost(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	return isDNSName(s)
}

// isSAN reports whether s can be a certificate subject alternative name: an
// IP address or a DNS name, optionally with a leading wildcard label.
func isSAN(s string) bool {
	return isHost(s) || (strings.HasPrefix(s, "*.") && isDNSName(s[2:]))
}

// isLinkName reports whether s is a valid Linux network interface name.
func isLinkName(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// isDevicePath reports whether s is a clean absolute path under /dev/.
func isDevicePath(s string) bool {
	return len(s) > len("/dev/") && strings.HasPrefix(s, "/dev/") && path.Clean(s) == s
}

// checkPort parses a TCP port number (1-65535).
func checkPort(s string) error {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("invalid port %q (want 1-65535)", s)
	}
	return nil
}

// checkPeer validates an etcd peer address: host or host:port.
func checkPeer(s string) error {
	if strings.Contains(s, "://") {
		return fmt.Errorf("%q is not a valid host or host:port (write the address without a scheme)", s)
	}
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		if !isHost(h) {
			return fmt.Errorf("%q is not a valid host or host:port", s)
		}
		if err := checkPort(port); err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
		return nil
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	}
	if !isHost(host) {
		return fmt.Errorf("%q is not a valid host or host:port", s)
	}
	return nil
}

// decodePEM base64-decodes s and returns its first PEM block.
func decodePEM(s string) (*pem.Block, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("is not valid base64 (want a base64-encoded PEM block)")
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, errors.New("does not contain a PEM block (want base64 of a PEM file)")
	}
	return block, nil
}

// parseCACert parses a base64-encoded PEM CA certificate.
func parseCACert(s string) (*x509.Certificate, error) {
	block, err := decodePEM(s)
	if err != nil {
		return nil, err
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("PEM block is %q, want CERTIFICATE", block.Type)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("cannot parse certificate: %w", err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, errors.New("certificate is not a CA (basic constraints CA:TRUE missing)")
	}
	return cert, nil
}

// parsePrivateKey parses a base64-encoded PEM private key (PKCS #8, SEC 1 EC
// or PKCS #1 RSA).
func parsePrivateKey(s string) (crypto.Signer, error) {
	block, err := decodePEM(s)
	if err != nil {
		return nil, err
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, want a PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot parse private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	return signer, nil
}

// keyMatches reports whether key is the private key of cert.
func keyMatches(key crypto.Signer, cert *x509.Certificate) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}
