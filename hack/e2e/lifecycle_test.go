package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
)

// TestMaintenanceToMTLS walks the operator's first steps: a node in
// maintenance mode refuses a bad config and keeps waiting, accepts a good
// one (fingerprint pinned), switches to mTLS, serves readers read-only, and
// comes back configured after a restart.
func TestMaintenanceToMTLS(t *testing.T) {
	const addr = "127.0.0.21:50000"
	dir := genConfig(t, "demo", "https://127.0.0.21:6443")
	nc := filepath.Join(dir, "nodeconfig")
	for _, f := range []string{"controlplane.yaml", "worker.yaml", "secrets.yaml", "nodeconfig"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	worker, _ := os.ReadFile(filepath.Join(dir, "worker.yaml"))
	if strings.Contains(string(worker), "key:") {
		t.Errorf("worker.yaml carries a private key:\n%s", worker)
	}

	stateDir := t.TempDir()
	m := startMachined(t, stateDir, addr)
	fp := m.fingerprint()

	r := mustNodectl(t, "version", "--insecure", "-n", addr)
	if !strings.Contains(r.stdout, "maintenance mode") {
		t.Fatalf("version does not report maintenance mode:\n%s", r)
	}
	// Maintenance mode serves only Version and ApplyConfiguration.
	r = nodectl(t, "--nodeconfig", nc, "-n", addr, "services")
	if r.code == 0 {
		t.Fatalf("services answered in maintenance mode:\n%s", r)
	}

	// A bad config is refused with the field path; nothing is persisted.
	cp, err := os.ReadFile(filepath.Join(dir, "controlplane.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bogus := filepath.Join(t.TempDir(), "bogus.yaml")
	if err := os.WriteFile(bogus, []byte(strings.Replace(string(cp), "type: controlplane", "type: bogus", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	r = nodectl(t, "apply-config", "--insecure", "-n", addr, "--file", bogus)
	if r.code == 0 || !strings.Contains(r.stderr, "machine.type") {
		t.Fatalf("bogus machine.type not refused with its path:\n%s", r)
	}
	// nodectl validates before sending; the node must refuse on its own too.
	bogusData, _ := os.ReadFile(bogus)
	c, err := client.New(client.Options{Address: addr, Insecure: true, Fingerprint: fp})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ApplyConfiguration(context.Background(), &machine.ApplyConfigurationRequest{Data: bogusData})
	c.Close()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "machine.type (line 3)") {
		t.Fatalf("node accepted or misreported a bogus config: %v", err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "state", "config.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused config was persisted: %v", err)
	}
	if r := mustNodectl(t, "version", "--insecure", "-n", addr); !strings.Contains(r.stdout, "maintenance mode") {
		t.Fatalf("node left maintenance mode after a refused config:\n%s", r)
	}

	// A wrong fingerprint pin is refused before anything is sent.
	r = nodectl(t, "apply-config", "--insecure", "-n", addr, "--cert-fingerprint", strings.Repeat("0", 64), "--file", filepath.Join(dir, "controlplane.yaml"))
	if r.code == 0 || !strings.Contains(r.stderr, "fingerprint") {
		t.Fatalf("wrong fingerprint accepted:\n%s", r)
	}

	mustNodectl(t, "apply-config", "--insecure", "-n", addr, "--cert-fingerprint", fp, "--file", filepath.Join(dir, "controlplane.yaml"))

	// Configured: mTLS with the admin nodeconfig works, insecure does not.
	r = mustNodectl(t, "--nodeconfig", nc, "-e", addr, "-n", addr, "services")
	for _, svc := range []string{"apid", "metrics"} {
		if !strings.Contains(r.stdout, svc) {
			t.Fatalf("services lacks %s:\n%s", svc, r)
		}
	}
	r = mustNodectl(t, "--nodeconfig", nc, "-n", addr, "get", "config")
	if !strings.Contains(r.stdout, "type: controlplane") || strings.Contains(r.stdout, "******") {
		t.Fatalf("admin get config should show the unredacted config:\n%s", r)
	}
	r = nodectl(t, "apply-config", "--insecure", "-n", addr, "--file", filepath.Join(dir, "controlplane.yaml"))
	if r.code == 0 {
		t.Fatalf("insecure apply to a configured node succeeded:\n%s", r)
	}

	// A reader can look but not touch.
	reader := filepath.Join(t.TempDir(), "reader")
	mustNodectl(t, "gen", "nodeconfig", "--with-secrets", filepath.Join(dir, "secrets.yaml"), "--roles", "os:reader", "--output", reader, "-e", addr)
	mustNodectl(t, "--nodeconfig", reader, "-n", addr, "services")
	r = mustNodectl(t, "--nodeconfig", reader, "-n", addr, "get", "config")
	if !strings.Contains(r.stdout, "******") {
		t.Fatalf("reader sees unredacted secrets:\n%s", r)
	}
	r = nodectl(t, "--nodeconfig", reader, "-n", addr, "apply-config", "--file", filepath.Join(dir, "controlplane.yaml"))
	if r.code == 0 || !strings.Contains(r.stderr, "os:admin") {
		t.Fatalf("reader could apply a config, or the error does not name the role:\n%s", r)
	}

	// Restart: straight back to mTLS.
	m.stop()
	m = startMachined(t, stateDir, addr)
	r = mustNodectl(t, "--nodeconfig", nc, "-n", addr, "version")
	if strings.Contains(r.stdout, "maintenance") {
		t.Fatalf("restarted node is in maintenance mode:\n%s", r)
	}
	if strings.Contains(m.log.String(), "fingerprint=") {
		t.Fatalf("configured node started in maintenance mode:\n%s", m.log.String())
	}
	waitFor(t, "metrics service running", 20*time.Second, func() error {
		r := nodectl(t, "--nodeconfig", nc, "-n", addr, "services")
		for _, l := range lines(r.stdout) {
			if strings.Contains(l, "metrics") && strings.Contains(l, "Running") {
				return nil
			}
		}
		return errors.New(r.stdout)
	})
}
