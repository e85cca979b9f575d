package gen

import (
	"errors"
	"strings"
	"testing"

	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/pki"
	"github.com/ballast-os/ballast/pkg/secrets"
)

func bundle(t *testing.T) *secrets.Bundle {
	t.Helper()
	b, err := secrets.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGenerateConfigsLoadAndWorkerHasNoKeys(t *testing.T) {
	out, err := Generate(Options{ClusterName: "demo", Endpoint: "https://10.5.0.2:6443", Secrets: bundle(t)})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := config.Load(out.ControlPlane)
	if err != nil {
		t.Fatalf("controlplane.yaml invalid: %v", err)
	}
	if cp.Machine.Type != config.TypeControlPlane || cp.Machine.CA.Key == "" || cp.Cluster.Etcd.CA == nil {
		t.Fatal("controlplane config lacks its CA keys")
	}
	w, err := config.Load(out.Worker)
	if err != nil {
		t.Fatalf("worker.yaml invalid: %v", err)
	}
	if w.Machine.Type != config.TypeWorker {
		t.Fatalf("worker type %q", w.Machine.Type)
	}
	if strings.Contains(string(out.Worker), "key:") {
		t.Fatalf("worker.yaml carries a private key:\n%s", out.Worker)
	}
	name, ctx, err := out.NodeConfig.Current("")
	if err != nil || name != "demo" || ctx.Endpoints[0] != "10.5.0.2" {
		t.Fatalf("nodeconfig context %q %+v %v", name, ctx, err)
	}
	crt, _ := pki.DecodeB64(ctx.Crt)
	c, err := pki.ParseCert(crt)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.Organization[0] != pki.RoleAdmin {
		t.Fatalf("nodeconfig role %v", c.Subject.Organization)
	}
}

func TestGeneratePatches(t *testing.T) {
	out, err := Generate(Options{
		ClusterName: "demo", Endpoint: "https://10.5.0.2:6443", Secrets: bundle(t),
		Patches:             []string{`{"machine":{"network":{"nameservers":["10.5.0.1"]}}}`},
		ControlPlanePatches: []string{`[{"op":"add","path":"/machine/certSANs","value":["cp.example"]}]`},
		WorkerPatches:       []string{`{"machine":{"install":{"disk":"/dev/vda"}}}`},
	})
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := config.Load(out.ControlPlane)
	w, _ := config.Load(out.Worker)
	if cp.Machine.Network.Nameservers[0] != "10.5.0.1" || w.Machine.Network.Nameservers[0] != "10.5.0.1" {
		t.Fatal("common patch not applied to both")
	}
	if len(cp.Machine.CertSANs) != 1 || len(w.Machine.CertSANs) != 0 {
		t.Fatal("control-plane patch leaked or missing")
	}
	if w.Machine.Install.Disk != "/dev/vda" || cp.Machine.Install.Disk != "" {
		t.Fatal("worker patch leaked or missing")
	}
}

func TestGenerateRejects(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"http endpoint", Options{ClusterName: "demo", Endpoint: "http://10.5.0.2:6443"}, "https"},
		{"no port", Options{ClusterName: "demo", Endpoint: "https://10.5.0.2"}, "port"},
		{"bad cluster name", Options{ClusterName: "Demo_Cluster", Endpoint: "https://10.5.0.2:6443"}, "cluster.name"},
		{"patch adds unknown field", Options{ClusterName: "demo", Endpoint: "https://10.5.0.2:6443", Patches: []string{`{"machine":{"bogus":1}}`}}, "bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Secrets = bundle(t)
			_, err := Generate(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestClientConfigRoles(t *testing.T) {
	b := bundle(t)
	if _, err := ClientConfig(b, "x", nil, []string{"os:root"}); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("unknown role: %v", err)
	}
	if _, err := ClientConfig(b, "x", nil, nil); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("no role: %v", err)
	}
	nc, err := ClientConfig(b, "x", []string{"10.0.0.1"}, []string{pki.RoleReader, pki.RoleEtcdBackup})
	if err != nil {
		t.Fatal(err)
	}
	crt, _ := pki.DecodeB64(nc.Contexts["x"].Crt)
	c, _ := pki.ParseCert(crt)
	if len(c.Subject.Organization) != 2 {
		t.Fatalf("roles %v", c.Subject.Organization)
	}
}
