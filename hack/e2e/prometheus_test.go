package e2e

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPrometheus turns mTLS on for the last control plane's metrics, writes
// a scrape config with `nodectl gen prometheus`, runs Debian's prometheus on
// it and asks it with promtool: etcd_server_has_leader is 1 on every control
// plane, exactly one node holds the VIP, and the mTLS node is scraped (with
// the os:reader certificate gen prometheus issued).
func testPrometheus(t *testing.T, c *localCluster, cps []string) {
	for _, tool := range []string{"prometheus", "promtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (hack/install-deps.sh test installs Debian's prometheus): %v", tool, err)
		}
	}
	secure := cps[len(cps)-1]
	c.liveApply(t, secure, `{"machine":{"metrics":{"mtls":true}}}`)
	t.Cleanup(func() { c.liveApply(t, secure, `{"machine":{"metrics":{"mtls":false}}}`) })

	dir := t.TempDir()
	r := c.must("gen", "prometheus", "--output-dir", dir, "--scrape-interval", "1s",
		"--with-secrets", filepath.Join(c.root, c.name, "secrets.yaml"), "--control-plane-nodes", strings.Join(cps, ","))
	t.Logf("%s", strings.TrimSpace(r.stdout))
	if st, err := os.Stat(filepath.Join(dir, "ballast-reader.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("Prometheus's client key: %v %v, want mode 0600", st, err)
	}
	// What Prometheus holds can read metrics and the reader's tables, no
	// more: its certificate carries os:reader only (the role matrix shows
	// what that role can not call).
	crtPEM, err := os.ReadFile(filepath.Join(dir, "ballast-reader.crt"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(crtPEM)
	if blk == nil {
		t.Fatal("ballast-reader.crt holds no PEM certificate")
	}
	crt, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if org := crt.Subject.Organization; len(org) != 1 || org[0] != "os:reader" {
		t.Fatalf("Prometheus's certificate carries roles %v, want only os:reader", org)
	}
	if out, err := exec.Command("promtool", "check", "config", filepath.Join(dir, "prometheus.yml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	prom := exec.Command("prometheus", "--config.file", filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path", filepath.Join(dir, "data"), "--web.listen-address", addr)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	prom.Stdout, prom.Stderr = logf, logf
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = prom.Process.Kill() // by its PID
		_ = prom.Wait()
		if t.Failed() {
			data, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", tail(string(data), 30))
		}
	})

	query := func(q string) (string, error) {
		out, err := exec.Command("promtool", "query", "instant", "http://"+addr, q).CombinedOutput()
		return string(out), err
	}
	start := time.Now()
	waitFor(t, "Prometheus to see every control plane's etcd leader", 90*time.Second, func() error {
		out, err := query("etcd_server_has_leader == 1")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, n := range cps {
			if !strings.Contains(out, `node="`+n+`"`) {
				return fmt.Errorf("no etcd_server_has_leader 1 from %s:\n%s", n, out)
			}
		}
		return nil
	})
	t.Logf("every control plane scraped with a leader %s after prometheus started", time.Since(start).Round(100*time.Millisecond))
	waitFor(t, "exactly one VIP holder and the mTLS node up in Prometheus", 30*time.Second, func() error {
		out, err := query("sum(ballast_vip_holder)")
		if err != nil || !strings.Contains(out, "=> 1 @") {
			return fmt.Errorf("sum(ballast_vip_holder): %v\n%s", err, out)
		}
		out, err = query(`up{job="ballast-mtls"} == 1`)
		if err != nil || !strings.Contains(out, `node="`+secure+`"`) {
			return fmt.Errorf(`up{job="ballast-mtls"} (the node serving its metrics over mTLS): %v\n%s`, err, out)
		}
		return nil
	})

	// Every query of the Grafana dashboard in docs/ returns data.
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "grafana", "ballast-control-plane.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("the Grafana dashboard: %v", err)
	}
	n := 0
	waitFor(t, "every dashboard query to return data", 60*time.Second, func() error {
		n = 0
		for _, p := range dash.Panels {
			for _, tg := range p.Targets {
				out, err := query(tg.Expr)
				if err != nil || !strings.Contains(out, "=>") {
					return fmt.Errorf("panel %q: %s returns nothing: %v %s", p.Title, tg.Expr, err, out)
				}
				n++
			}
		}
		return nil
	})
	t.Logf("%d panels, %d dashboard queries answered", len(dash.Panels), n)
}
