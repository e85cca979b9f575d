package pki

import (
	"crypto/x509"
	"errors"
	"net"
	"testing"
)

func TestIssueChainsToCAWithRolesAndSANs(t *testing.T) {
	ca, err := NewCA("test-ca", "ballast")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		req   Request
		usage x509.ExtKeyUsage
	}{
		{"server", Request{CommonName: "node1", DNSNames: []string{"node1"}, IPs: []net.IP{net.ParseIP("10.0.0.1")}, Usage: UsageServer}, x509.ExtKeyUsageServerAuth},
		{"client with role", Request{CommonName: "nodectl", Organization: []string{RoleReader}, Usage: UsageClient}, x509.ExtKeyUsageClientAuth},
	}
	pool, err := Pool(ca.Crt)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, err := Issue(ca, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if !KeyMatches(leaf.Crt, leaf.Key) {
				t.Fatal("issued key does not match the certificate")
			}
			c, err := ParseCert(leaf.Crt)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{tt.usage}}); err != nil {
				t.Fatalf("does not verify against the CA: %v", err)
			}
			if len(tt.req.Organization) > 0 && c.Subject.Organization[0] != tt.req.Organization[0] {
				t.Fatalf("organization %v, want %v", c.Subject.Organization, tt.req.Organization)
			}
			if len(tt.req.IPs) > 0 && !c.IPAddresses[0].Equal(tt.req.IPs[0]) {
				t.Fatalf("IP SANs %v", c.IPAddresses)
			}
			if c.NotAfter.After(mustParse(t, ca.Crt).NotAfter) {
				t.Fatal("leaf outlives its CA")
			}
		})
	}
}

func TestIssueWithoutCAKey(t *testing.T) {
	ca, err := NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Issue(&CertAndKey{Crt: ca.Crt}, Request{CommonName: "x", Usage: UsageClient})
	if !errors.Is(err, ErrNoKey) {
		t.Fatalf("got %v, want ErrNoKey", err)
	}
}

func TestKeyMismatchAndFingerprint(t *testing.T) {
	a, _ := NewCA("a")
	b, _ := NewCA("b")
	if KeyMatches(a.Crt, b.Key) {
		t.Fatal("foreign key reported as matching")
	}
	ca, cb := mustParse(t, a.Crt), mustParse(t, b.Crt)
	if Fingerprint(ca) == Fingerprint(cb) || len(Fingerprint(ca)) != 64 {
		t.Fatalf("fingerprints %q %q", Fingerprint(ca), Fingerprint(cb))
	}
	if Fingerprint(ca) != Fingerprint(mustParse(t, a.Crt)) {
		t.Fatal("fingerprint not stable")
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		if _, err := ParseCert([]byte(in)); err == nil {
			t.Errorf("ParseCert(%q) succeeded", in)
		}
		if _, err := ParseKey([]byte(in)); err == nil {
			t.Errorf("ParseKey(%q) succeeded", in)
		}
	}
}

func mustParse(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	c, err := ParseCert(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFromB64(t *testing.T) {
	ca, err := NewCA("x")
	if err != nil {
		t.Fatal(err)
	}
	got, err := FromB64(EncodeB64(ca.Crt), "")
	if err != nil || !Equal(got.Crt, ca.Crt) || got.Key != nil {
		t.Fatalf("certificate only: %+v %v", got, err)
	}
	got, err = FromB64(EncodeB64(ca.Crt), EncodeB64(ca.Key))
	if err != nil || !KeyMatches(got.Crt, got.Key) {
		t.Fatalf("with key: %v", err)
	}
	if _, err := FromB64("!!", ""); err == nil {
		t.Fatal("bad base64 accepted")
	}
}
