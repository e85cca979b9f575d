package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/pkg/gen"
	"github.com/ballast-os/ballast/pkg/pki"
	"github.com/ballast-os/ballast/pkg/secrets"
)

// TestMetricsMTLS: with machine.metrics.mtls (applied live) the metrics
// endpoint asks for a client certificate of the OS CA with a reader role or
// more: plain HTTP, no certificate and an os:etcd:backup certificate get
// nothing; an os:reader certificate scrapes. Turned off again (live), plain
// HTTP works.
func TestMetricsMTLS(t *testing.T) {
	requireRoot(t)
	const api = "127.0.0.23"
	dir := genConfig(t, "metrics", "https://"+api+":6443")
	nc := filepath.Join(dir, "nodeconfig")
	m := startMachined(t, t.TempDir(), api+":50000")
	mustNodectl(t, "apply-config", "--insecure", "-n", api, "--cert-fingerprint", m.fingerprint(), "--file", filepath.Join(dir, "controlplane.yaml"))
	url := "http://" + api + ":50001/metrics"
	scrape := func(c *http.Client, url string) error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "ballast_service_up") {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	}
	plain := &http.Client{Timeout: 3 * time.Second}
	waitFor(t, "plain metrics", 30*time.Second, func() error { return scrape(plain, url) })

	bundle, err := secrets.Load(filepath.Join(dir, "secrets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := pki.DecodeB64(bundle.Certs.OS.Crt)
	pool, err := pki.Pool(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	withRole := func(role string) *http.Client {
		ncfg, err := gen.ClientConfig(bundle, "metrics", []string{api}, []string{role})
		if err != nil {
			t.Fatal(err)
		}
		ctx := ncfg.Contexts[ncfg.Context]
		crt, _ := pki.DecodeB64(ctx.Crt)
		key, _ := pki.DecodeB64(ctx.Key)
		cert, err := tls.X509KeyPair(crt, key)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	}
	active := filepath.Join(t.TempDir(), "active.yaml")
	if err := os.WriteFile(active, []byte(mustNodectl(t, "--nodeconfig", nc, "-n", api, "get", "config").stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	mustNodectl(t, "--nodeconfig", nc, "-n", api, "apply-config", "--mode", "no-reboot", "--file", active, "--config-patch", `{"machine":{"metrics":{"mtls":true}}}`)
	tlsURL := "https://" + api + ":50001/metrics"
	waitFor(t, "metrics over mTLS for os:reader", 30*time.Second, func() error { return scrape(withRole(pki.RoleReader), tlsURL) })
	for what, c := range map[string]*http.Client{
		"plain HTTP":                 plain,
		"TLS without a certificate":  {Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
		"an os:etcd:backup identity": withRole(pki.RoleEtcdBackup),
	} {
		u := tlsURL
		if what == "plain HTTP" {
			u = url
		}
		if err := scrape(c, u); err == nil {
			t.Errorf("%s scraped the metrics", what)
		}
	}
	mustNodectl(t, "--nodeconfig", nc, "-n", api, "apply-config", "--mode", "no-reboot", "--file", active)
	waitFor(t, "plain metrics again", 30*time.Second, func() error { return scrape(plain, url) })
}
