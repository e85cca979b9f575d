package k8s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Probe checks a component's health endpoint on the node's loopback.
type Probe struct {
	url    string
	client *http.Client
	// answeredIsAlive counts a 401 or 403 as success: the server is up and
	// answering, it only does not let an anonymous caller in yet (the RBAC
	// rule that opens /livez to everyone is created by the apiserver's own
	// post-start hook, which under a slow CPU takes a minute).
	answeredIsAlive bool
}

// APIServerProbe checks https://127.0.0.1:6443/readyz, verifying the
// serving certificate against the cluster CA in the directory (re-read at
// every check, so that rotation is seen).
func APIServerProbe(p Paths) *Probe {
	return APIServerProbeAt(p, fmt.Sprintf("127.0.0.1:%d", APIServerPort))
}

// APIServerLivenessProbe checks https://127.0.0.1:6443/livez like
// APIServerProbe: whether the apiserver is alive, whatever etcd's state
// (the check kubeadm's liveness probe makes).
func APIServerLivenessProbe(p Paths) *Probe {
	pr := APIServerProbe(p)
	pr.url = strings.TrimSuffix(pr.url, "/readyz") + "/livez"
	pr.answeredIsAlive = true
	return pr
}

// APIServerProbeAt checks /readyz of an apiserver reached at hostport (the
// node's API load balancer, say), verifying it like APIServerProbe.
func APIServerProbeAt(p Paths, hostport string) *Probe {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: true, // verified below against the current CA file
			VerifyConnection: func(cs tls.ConnectionState) error {
				return verifyAgainst(p.file(caCrt), cs)
			},
		},
		// Kept alive: the VIP asks several times a second, and a TLS
		// handshake each time was the probe's main cost. A restarted
		// apiserver (new certificate) closes the connection.
		MaxIdleConns:    1,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Probe{url: "https://" + hostport + "/readyz", client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

// LocalProbe checks https://127.0.0.1:port/healthz of a component serving a
// self-signed certificate on the node's loopback (controller-manager,
// scheduler); the certificate is not verified: the address is local.
func LocalProbe(port int) *Probe {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}, //nolint:gosec // loopback only
		// Kept alive as APIServerProbeAt's: a handshake every 2 s was most
		// of the probe's cost.
		MaxIdleConns:    1,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Probe{url: fmt.Sprintf("https://127.0.0.1:%d/healthz", port), client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

// KubeletProbe checks the kubelet's http://127.0.0.1:10248/healthz.
func KubeletProbe() *Probe {
	return &Probe{url: fmt.Sprintf("http://127.0.0.1:%d/healthz", KubeletHealthzPort), client: &http.Client{Timeout: 5 * time.Second}}
}

func verifyAgainst(caFile string, cs tls.ConnectionState) error {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("no CA certificate in %s", caFile)
	}
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("no server certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: "localhost"})
	return err
}

// Check returns nil when the endpoint answers 200 ok.
func (p *Probe) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", p.url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if p.answeredIsAlive && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", p.url, resp.Status, lastLines(string(body), 3))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// Cached wraps a check so that callers more frequent than every interval
// share one result (the VIP asks on every renewal).
func Cached(check func(context.Context) error, interval time.Duration) func(context.Context) error {
	var (
		mu   sync.Mutex
		at   time.Time
		last error
	)
	return func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if !at.IsZero() && time.Since(at) < interval {
			return last
		}
		last = check(ctx)
		at = time.Now()
		return last
	}
}
