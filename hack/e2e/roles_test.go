package e2e

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"net"
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
	caPEM, _ := pki.DecodeB64(bundle.Certs.OS.Crt)

	// The machine-token path in maintenance mode: refused, the node has no
	// CA to sign with and serves nothing but ApplyConfiguration and Version.
	t.Run("machine token in maintenance mode", func(t *testing.T) {
		c, err := client.New(client.Options{Address: addr, Insecure: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = signCSR(c, csrPEM(t, "matrix-worker"), bundle.Secrets.MachineToken)
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("SignNodeCertificate in maintenance mode: %v, want FailedPrecondition", err)
		}
	})
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
		{"Events", func(ctx context.Context, c *client.Client) error {
			s, err := c.Events(ctx, &machine.EventsRequest{Tail: 5})
			if err != nil {
				return err
			}
			return drain(s.Recv)
		}},
		{"Processes", func(ctx context.Context, c *client.Client) error {
			_, err := c.Processes(ctx, &machine.ProcessesRequest{})
			return err
		}},
		{"Memory", func(ctx context.Context, c *client.Client) error {
			_, err := c.Memory(ctx, &machine.MemoryRequest{})
			return err
		}},
		{"Mounts", func(ctx context.Context, c *client.Client) error {
			_, err := c.Mounts(ctx, &machine.MountsRequest{})
			return err
		}},
		{"Netstat", func(ctx context.Context, c *client.Client) error {
			_, err := c.Netstat(ctx, &machine.NetstatRequest{})
			return err
		}},
		{"Usage", func(ctx context.Context, c *client.Client) error {
			_, err := c.Usage(ctx, &machine.UsageRequest{})
			return err
		}},
		{"SystemStatus", func(ctx context.Context, c *client.Client) error {
			_, err := c.SystemStatus(ctx, &machine.SystemStatusRequest{})
			return err
		}},
		{"Read", func(ctx context.Context, c *client.Client) error {
			s, err := c.Read(ctx, &machine.ReadRequest{Path: "/proc/loadavg"})
			if err != nil {
				return err
			}
			return drain(s.Recv)
		}},
		{"List", func(ctx context.Context, c *client.Client) error {
			_, err := c.List(ctx, &machine.ListRequest{Path: "/proc/self"})
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
	// etcd RPCs, every one of them: this node never bootstrapped etcd, so an
	// allowed call fails with Unavailable, FailedPrecondition or
	// InvalidArgument; what matters is the role check. Bootstrap would
	// create a cluster, so only its denials are exercised.
	ec := func(c *client.Client) machine.EtcdServiceClient { return machine.NewEtcdServiceClient(c.Conn()) }
	etcdCalls := []call{
		{"Bootstrap", func(ctx context.Context, c *client.Client) error {
			_, err := ec(c).Bootstrap(ctx, &machine.BootstrapRequest{})
			return err
		}},
		{"Recover", func(ctx context.Context, c *client.Client) error {
			s, err := ec(c).Recover(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&machine.RecoverRequest{Data: []byte("not a snapshot")}); err != nil {
				return err
			}
			_, err = s.CloseAndRecv()
			return err
		}},
		{"EtcdMembers", func(ctx context.Context, c *client.Client) error {
			_, err := ec(c).EtcdMembers(ctx, &machine.EtcdMembersRequest{})
			return err
		}},
		{"EtcdStatus", func(ctx context.Context, c *client.Client) error {
			_, err := ec(c).EtcdStatus(ctx, &machine.EtcdStatusRequest{})
			return err
		}},
		{"EtcdLeave", func(ctx context.Context, c *client.Client) error {
			_, err := ec(c).EtcdLeave(ctx, &machine.EtcdLeaveRequest{})
			return err
		}},
		{"EtcdRemoveMember", func(ctx context.Context, c *client.Client) error {
			_, err := ec(c).EtcdRemoveMember(ctx, &machine.EtcdRemoveMemberRequest{Id: 1})
			return err
		}},
		{"EtcdForfeitLeadership", func(ctx context.Context, c *client.Client) error {
			_, err := ec(c).EtcdForfeitLeadership(ctx, &machine.EtcdForfeitLeadershipRequest{})
			return err
		}},
		{"EtcdDefrag", func(ctx context.Context, c *client.Client) error {
			_, err := ec(c).EtcdDefrag(ctx, &machine.EtcdDefragRequest{})
			return err
		}},
		{"EtcdAlarmList", func(ctx context.Context, c *client.Client) error {
			_, err := ec(c).EtcdAlarmList(ctx, &machine.EtcdAlarmListRequest{})
			return err
		}},
		{"EtcdAlarmDisarm", func(ctx context.Context, c *client.Client) error {
			_, err := ec(c).EtcdAlarmDisarm(ctx, &machine.EtcdAlarmDisarmRequest{})
			return err
		}},
		{"EtcdSnapshot", func(ctx context.Context, c *client.Client) error {
			s, err := ec(c).EtcdSnapshot(ctx, &machine.EtcdSnapshotRequest{})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"EtcdClientCert", func(ctx context.Context, c *client.Client) error {
			_, err := ec(c).EtcdClientCert(ctx, &machine.EtcdClientCertRequest{})
			return err
		}},
	}
	// Calls this node (no VIP, no Kubernetes: --kubernetes=false) answers
	// with an empty status or FailedPrecondition when allowed.
	stateCalls := []call{
		{"VIPStatus", func(ctx context.Context, c *client.Client) error {
			_, err := c.VIPStatus(ctx, &machine.VIPStatusRequest{})
			return err
		}},
		{"Kubeconfig", func(ctx context.Context, c *client.Client) error {
			_, err := c.Kubeconfig(ctx, &machine.KubeconfigRequest{})
			return err
		}},
		{"Containers", func(ctx context.Context, c *client.Client) error {
			_, err := c.Containers(ctx, &machine.ContainersRequest{})
			return err
		}},
		{"NetworkStatus", func(ctx context.Context, c *client.Client) error {
			_, err := c.NetworkStatus(ctx, &machine.NetworkStatusRequest{})
			return err
		}},
		{"TimeStatus", func(ctx context.Context, c *client.Client) error {
			_, err := c.TimeStatus(ctx, &machine.TimeStatusRequest{})
			return err
		}},
		// A manifest that is not one: refused as InvalidArgument when
		// the role may upgrade, before anything is written.
		{"Upgrade", func(ctx context.Context, c *client.Client) error {
			s, err := c.Upgrade(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&machine.UpgradeRequest{Msg: &machine.UpgradeRequest_Start{Start: &machine.UpgradeStart{Manifest: []byte("{}")}}}); err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		// Slot b was never written: FailedPrecondition when allowed.
		{"Rollback", func(ctx context.Context, c *client.Client) error {
			_, err := c.Rollback(ctx, &machine.RollbackRequest{})
			return err
		}},
		{"UpgradeStatus", func(ctx context.Context, c *client.Client) error {
			_, err := c.UpgradeStatus(ctx, &machine.UpgradeStatusRequest{})
			return err
		}},
		{"Dmesg", func(ctx context.Context, c *client.Client) error {
			s, err := c.Dmesg(ctx, &machine.DmesgRequest{})
			if err != nil {
				return err
			}
			if _, err = s.Recv(); errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}},
	}
	stateAllowed := map[string][]string{
		pki.RoleAdmin:      {"VIPStatus", "Kubeconfig", "Containers", "NetworkStatus", "TimeStatus", "Dmesg", "Upgrade", "Rollback", "UpgradeStatus"},
		pki.RoleOperator:   {"VIPStatus", "Containers", "NetworkStatus", "TimeStatus", "Dmesg", "UpgradeStatus"},
		pki.RoleReader:     {"VIPStatus", "Containers", "NetworkStatus", "TimeStatus", "UpgradeStatus"},
		pki.RoleEtcdBackup: {},
	}
	if n := len(machine.MachineService_ServiceDesc.Methods) + len(machine.MachineService_ServiceDesc.Streams); n != len(calls)+len(destructive)+len(stateCalls) {
		t.Fatalf("the machine service has %d RPCs, the matrix covers %d: add the new ones", n, len(calls)+len(destructive)+len(stateCalls))
	}
	// The expected matrix is written out here, not read from the server's
	// table, so that a change to either is a visible decision.
	etcdAllowed := map[string][]string{
		pki.RoleAdmin: {"Bootstrap", "Recover", "EtcdMembers", "EtcdStatus", "EtcdLeave", "EtcdRemoveMember", "EtcdForfeitLeadership",
			"EtcdDefrag", "EtcdAlarmList", "EtcdAlarmDisarm", "EtcdSnapshot", "EtcdClientCert"},
		pki.RoleOperator:   {"EtcdMembers", "EtcdStatus", "EtcdForfeitLeadership", "EtcdDefrag", "EtcdAlarmList", "EtcdAlarmDisarm", "EtcdSnapshot"},
		pki.RoleReader:     {"EtcdMembers", "EtcdStatus", "EtcdAlarmList"},
		pki.RoleEtcdBackup: {"EtcdSnapshot"},
	}
	tools := []string{"Events", "Processes", "Memory", "Mounts", "Netstat", "Usage", "SystemStatus"}
	allowed := map[string][]string{
		pki.RoleAdmin: append([]string{"Version", "ApplyConfiguration", "GetConfiguration", "ServiceList", "ServiceStop", "ServiceStart",
			"ServiceRestart", "Logs", "Reboot", "Shutdown", "Reset", "Read", "List"}, tools...),
		pki.RoleOperator: append([]string{"Version", "GetConfiguration", "ServiceList", "ServiceStop", "ServiceStart", "ServiceRestart",
			"Logs", "Reboot", "Shutdown", "Read", "List"}, tools...),
		pki.RoleReader:     append([]string{"Version", "GetConfiguration", "ServiceList", "Logs"}, tools...),
		pki.RoleEtcdBackup: {"Version"},
	}
	if n := len(machine.EtcdService_ServiceDesc.Methods) + len(machine.EtcdService_ServiceDesc.Streams); n != len(etcdCalls) {
		t.Fatalf("the etcd service has %d RPCs, the matrix covers %d: add the new ones", n, len(etcdCalls))
	}
	for _, role := range pki.AllRoles {
		t.Run(role, func(t *testing.T) {
			c := clientFor(t, bundle, caPEM, addr, role)
			for _, cl := range append(append([]call{}, calls...), destructive...) {
				want := contains(allowed[role], cl.name)
				if !want || !isDestructive(cl.name) {
					checkCall(t, c, cl, want, codes.PermissionDenied)
				}
			}
			for _, cl := range append(append([]call{}, etcdCalls...), stateCalls...) {
				if cl.name == "Bootstrap" && contains(etcdAllowed[role], cl.name) {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				err := cl.fn(ctx, c)
				cancel()
				code := status.Code(err)
				if contains(etcdAllowed[role], cl.name) || contains(stateAllowed[role], cl.name) {
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
		for _, cl := range append(append(append(append([]call{}, calls...), destructive...), etcdCalls...), stateCalls...) {
			checkCall(t, c, cl, false, codes.Unauthenticated)
		}
	})

	// The machine-token path on a configured control plane: no client
	// certificate is needed, the token is; what the certificate names is
	// what the signer saw, never what the CSR asked for.
	t.Run("machine token", func(t *testing.T) {
		const source = "127.0.0.99"
		dial := func(src string, withRole bool) *client.Client {
			o := client.Options{Address: addr, CA: caPEM, ServerOnly: true, RequireControlPlane: true, SourceIP: net.ParseIP(src)}
			if withRole {
				nc, err := gen.ClientConfig(bundle, "x", []string{addr}, []string{pki.RoleAdmin})
				if err != nil {
					t.Fatal(err)
				}
				if o, err = client.FromContext(nc.Contexts["x"], addr); err != nil {
					t.Fatal(err)
				}
				o.SourceIP = net.ParseIP(src)
			}
			c, err := client.New(o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
		for _, withRole := range []bool{false, true} {
			if _, err := signCSR(dial(source, withRole), csrPEM(t, "matrix-worker", "127.0.0.22"), "wrong-token"); status.Code(err) != codes.PermissionDenied {
				t.Errorf("wrong token (client certificate: %v): %v, want PermissionDenied", withRole, err)
			}
		}
		// Until the cluster's etcd runs, the signer cannot tell who holds a
		// name (the machine registry lives in etcd): it refuses rather
		// than guess, and the worker asks again.
		if _, err := signCSR(dial(source, false), csrPEM(t, "matrix-worker"), bundle.Secrets.MachineToken); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "machine registry") {
			t.Fatalf("valid token before etcd runs: %v, want Unavailable naming the machine registry", err)
		}
		mustNodectl(t, "--nodeconfig", filepath.Join(dir, "nodeconfig"), "-n", "127.0.0.22", "bootstrap")
		// Asks for the control plane's own address: gets only its own.
		var crtPEM []byte
		waitFor(t, "a certificate for the machine token", time.Minute, func() error {
			var err error
			crtPEM, err = signCSR(dial(source, false), csrPEM(t, "matrix-worker", "127.0.0.22"), bundle.Secrets.MachineToken)
			return err
		})
		crt, err := pki.ParseCert(crtPEM)
		if err != nil {
			t.Fatal(err)
		}
		if len(crt.IPAddresses) != 1 || crt.IPAddresses[0].String() != source || len(crt.DNSNames) != 1 || crt.DNSNames[0] != "matrix-worker" {
			t.Errorf("certificate names %v %v, want only %s and matrix-worker", crt.IPAddresses, crt.DNSNames, source)
		}
		if pki.NodeKind(crt) != pki.NodeWorker || len(crt.ExtKeyUsage) != 1 || crt.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
			t.Errorf("certificate is %v with usages %v, want an os:node:worker server certificate", crt.Subject.Organization, crt.ExtKeyUsage)
		}
		// Calling from the control plane's own address is refused.
		if _, err := signCSR(dial("127.0.0.22", false), csrPEM(t, "matrix-worker"), bundle.Secrets.MachineToken); status.Code(err) != codes.PermissionDenied {
			t.Errorf("request from the control plane's address: %v, want PermissionDenied", err)
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
		for _, cl := range append(append(append(append([]call{}, calls...), destructive...), etcdCalls...), stateCalls...) {
			checkCall(t, c, cl, false, codes.Unauthenticated)
		}
	})
}

// csrPEM makes a CSR for hostname asking for ips as well.
func csrPEM(t *testing.T, hostname string, ips ...string) []byte {
	t.Helper()
	key, _, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: hostname}}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(nil, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func signCSR(c *client.Client, csr []byte, token string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := machine.NewCertificateServiceClient(c.Conn()).SignNodeCertificate(ctx, &machine.SignNodeCertificateRequest{Csr: csr, Token: token})
	return resp.GetCrt(), err
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

// drain reads a server stream to its end (nil at EOF).
func drain[T any](recv func() (T, error)) error {
	for {
		if _, err := recv(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}
