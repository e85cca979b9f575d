package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/gen"
	"github.com/ballast-os/ballast/pkg/pki"
	"github.com/ballast-os/ballast/pkg/secrets"
)

// call is one RPC of the matrix; it must not change the node in a way that
// breaks the calls after it.
type call struct {
	name string
	fn   func(ctx context.Context, c *client.Client) error
}

// TestRoleMatrix calls every RPC over real TLS as each role, without a
// client certificate, and with a certificate from a foreign CA.
func TestRoleMatrix(t *testing.T) {
	const addr = "127.0.0.22:50000"
	dir := genConfig(t, "matrix", "https://127.0.0.22:6443")
	cpData, err := os.ReadFile(filepath.Join(dir, "controlplane.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := secrets.Load(filepath.Join(dir, "secrets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := startMachined(t, t.TempDir(), addr)
	mustNodectl(t, "apply-config", "--insecure", "-n", addr, "--cert-fingerprint", m.fingerprint(), "--file", filepath.Join(dir, "controlplane.yaml"))

	calls := []call{
		{"Version", func(ctx context.Context, c *client.Client) error {
			_, err := c.Version(ctx, &machine.VersionRequest{})
			return err
		}},
		{"ApplyConfiguration", func(ctx context.Context, c *client.Client) error {
			_, err := c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: cpData, DryRun: true})
			return err
		}},
		{"GetConfiguration", func(ctx context.Context, c *client.Client) error {
			_, err := c.GetConfiguration(ctx, &machine.GetConfigurationRequest{})
			return err
		}},
		{"ServiceList", func(ctx context.Context, c *client.Client) error {
			_, err := c.ServiceList(ctx, &machine.ServiceListRequest{})
			return err
		}},
		{"ServiceStop", func(ctx context.Context, c *client.Client) error {
			_, err := c.ServiceStop(ctx, &machine.ServiceActionRequest{Id: "metrics"})
			return err
		}},
		{"ServiceStart", func(ctx context.Context, c *client.Client) error {
			_, err := c.ServiceStart(ctx, &machine.ServiceActionRequest{Id: "metrics"})
			return err
		}},
		{"ServiceRestart", func(ctx context.Context, c *client.Client) error {
			_, err := c.ServiceRestart(ctx, &machine.ServiceActionRequest{Id: "metrics"})
			return err
		}},
		{"Logs", func(ctx context.Context, c *client.Client) error {
			s, err := c.Logs(ctx, &machine.LogsRequest{Id: "machined", TailLines: 1})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
	}
	// Destructive RPCs: only denials are exercised here (the allowed calls
	// are covered by TestRebootResetShutdown).
	destructive := []call{
		{"Reboot", func(ctx context.Context, c *client.Client) error {
			_, err := c.Reboot(ctx, &machine.RebootRequest{})
			return err
		}},
		{"Shutdown", func(ctx context.Context, c *client.Client) error {
			_, err := c.Shutdown(ctx, &machine.ShutdownRequest{})
			return err
		}},
		{"Reset", func(ctx context.Context, c *client.Client) error {
			_, err := c.Reset(ctx, &machine.ResetRequest{})
			return err
		}},
	}
	// etcd RPCs: this node never bootstrapped etcd, so an allowed call fails
	// with Unavailable or FailedPrecondition; what matters is the role check.
	etcdCalls := []call{
		{"EtcdMembers", func(ctx context.Context, c *client.Client) error {
			_, err := machine.NewEtcdServiceClient(c.Conn()).EtcdMembers(ctx, &machine.EtcdMembersRequest{})
			return err
		}},
		{"EtcdSnapshot", func(ctx context.Context, c *client.Client) error {
			s, err := machine.NewEtcdServiceClient(c.Conn()).EtcdSnapshot(ctx, &machine.EtcdSnapshotRequest{})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"EtcdLeave", func(ctx context.Context, c *client.Client) error {
			_, err := machine.NewEtcdServiceClient(c.Conn()).EtcdLeave(ctx, &machine.EtcdLeaveRequest{})
			return err
		}},
		{"EtcdClientCert", func(ctx context.Context, c *client.Client) error {
			_, err := machine.NewEtcdServiceClient(c.Conn()).EtcdClientCert(ctx, &machine.EtcdClientCertRequest{})
			return err
		}},
	}
	etcdAllowed := map[string][]string{
		pki.RoleAdmin:      {"EtcdMembers", "EtcdSnapshot", "EtcdLeave", "EtcdClientCert"},
		pki.RoleOperator:   {"EtcdMembers", "EtcdSnapshot"},
		pki.RoleReader:     {"EtcdMembers"},
		pki.RoleEtcdBackup: {"EtcdSnapshot"},
	}
	allowed := map[string][]string{
		pki.RoleAdmin:      {"Version", "ApplyConfiguration", "GetConfiguration", "ServiceList", "ServiceStop", "ServiceStart", "ServiceRestart", "Logs", "Reboot", "Shutdown", "Reset"},
		pki.RoleOperator:   {"Version", "GetConfiguration", "ServiceList", "ServiceStop", "ServiceStart", "ServiceRestart", "Logs", "Reboot", "Shutdown"},
		pki.RoleReader:     {"Version", "GetConfiguration", "ServiceList", "Logs"},
		pki.RoleEtcdBackup: {"Version"},
	}

	caPEM, _ := pki.DecodeB64(bundle.Certs.OS.Crt)
	for _, role := range pki.AllRoles {
		t.Run(role, func(t *testing.T) {
			c := clientFor(t, bundle, caPEM, addr, role)
			for _, cl := range append(append([]call{}, calls...), destructive...) {
				want := contains(allowed[role], cl.name)
				if !want || !isDestructive(cl.name) {
					checkCall(t, c, cl, want, codes.PermissionDenied)
				}
			}
			for _, cl := range etcdCalls {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				err := cl.fn(ctx, c)
				cancel()
				code := status.Code(err)
				if contains(etcdAllowed[role], cl.name) {
					if code == codes.PermissionDenied || code == codes.Unauthenticated {
						t.Errorf("%s: allowed role refused: %v", cl.name, err)
					}
				} else if code != codes.PermissionDenied {
					t.Errorf("%s: got %v, want PermissionDenied", cl.name, err)
				}
			}
		})
	}

	t.Run("no client certificate", func(t *testing.T) {
		c, err := client.New(client.Options{Address: addr, Insecure: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, cl := range append(append([]call{}, calls...), destructive...) {
			checkCall(t, c, cl, false, codes.Unauthenticated)
		}
	})

	t.Run("foreign CA", func(t *testing.T) {
		foreign, err := secrets.Generate()
		if err != nil {
			t.Fatal(err)
		}
		nc, err := gen.ClientConfig(foreign, "foreign", []string{addr}, []string{pki.RoleAdmin})
		if err != nil {
			t.Fatal(err)
		}
		fc := nc.Contexts["foreign"]
		crt, _ := pki.DecodeB64(fc.Crt)
		key, _ := pki.DecodeB64(fc.Key)
		// Trust the real node's CA so that only the client side is foreign.
		c, err := client.New(client.Options{Address: addr, CA: caPEM, Crt: crt, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, cl := range append(append([]call{}, calls...), destructive...) {
			checkCall(t, c, cl, false, codes.Unauthenticated)
		}
	})
}

func isDestructive(name string) bool {
	return name == "Reboot" || name == "Shutdown" || name == "Reset"
}

func clientFor(t *testing.T, bundle *secrets.Bundle, caPEM []byte, addr, role string) *client.Client {
	t.Helper()
	nc, err := gen.ClientConfig(bundle, "x", []string{addr}, []string{role})
	if err != nil {
		t.Fatal(err)
	}
	opts, err := client.FromContext(nc.Contexts["x"], addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// checkCall asserts that cl succeeds when allowed and otherwise fails with
// the denial code.
func checkCall(t *testing.T, c *client.Client, cl call, allowed bool, denial codes.Code) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := cl.fn(ctx, c)
	switch {
	case allowed && err != nil:
		t.Errorf("%s: allowed call failed: %v", cl.name, err)
	case !allowed && err == nil:
		t.Errorf("%s: call succeeded, want %s", cl.name, denial)
	case !allowed && status.Code(err) != denial:
		t.Errorf("%s: got %v, want code %s", cl.name, err, denial)
	case !allowed && denial == codes.Unauthenticated && !strings.Contains(err.Error(), "certificate"):
		t.Errorf("%s: refused for another reason than the certificate: %v", cl.name, err)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
