package e2e

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/pkg/pki"
	"github.com/ballast-os/ballast/pkg/secrets"
)

// liveApply patches node's active config and applies it with --mode
// no-reboot: the change must take effect without a restart, which the
// caller checks by its effect and by the unchanged PID.
func (c *localCluster) liveApply(t *testing.T, node, patch string) {
	t.Helper()
	r := c.must("-n", node, "get", "config")
	f := filepath.Join(t.TempDir(), "active.yaml")
	if err := os.WriteFile(f, []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("-n", node, "apply-config", "--mode", "no-reboot", "--file", f, "--config-patch", patch)
}

// serverNameVerifies reports whether node's machine API presents a
// certificate of the OS CA that is valid for name.
func (c *localCluster) serverNameVerifies(node, name string) error {
	bundle, err := secrets.Load(filepath.Join(c.root, c.name, "secrets.yaml"))
	if err != nil {
		return err
	}
	caPEM, err := pki.DecodeB64(bundle.Certs.OS.Crt)
	if err != nil {
		return err
	}
	pool, err := pki.Pool(caPEM)
	if err != nil {
		return err
	}
	d := &net.Dialer{Timeout: 3 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(node, "50000"), &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS13})
	if err != nil {
		return err
	}
	return conn.Close()
}

// testLiveCertNames changes what a node's certificate must name, live, and
// waits for the node to present a certificate valid for the new name.
func testLiveCertNames(t *testing.T, c *localCluster, stateDir, node, patch, name string) {
	pid := agentPID(t, stateDir)
	if err := c.serverNameVerifies(node, name); err == nil {
		t.Fatalf("the certificate of %s is valid for %s before the change", node, name)
	}
	c.liveApply(t, node, patch)
	waitFor(t, fmt.Sprintf("%s to present a certificate for %s", node, name), 30*time.Second, func() error {
		return c.serverNameVerifies(node, name)
	})
	if got := agentPID(t, stateDir); got != pid {
		t.Fatalf("machined restarted (pid %d, was %d): the change was not applied live", got, pid)
	}
}

// snapshotsWritten counts the scheduled snapshots a node logged and lists
// the snapshot files it keeps.
func snapshotsWritten(stateDir string) (int, []string, error) {
	n := logCount(stateDir, `msg="etcd snapshot written"`)
	entries, err := os.ReadDir(filepath.Join(stateDir, "var", "lib", "etcd-snapshots"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return n, nil, err
	}
	var files []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "etcd-") && strings.HasSuffix(e.Name(), ".db") {
			files = append(files, e.Name())
		}
	}
	return n, files, nil
}
