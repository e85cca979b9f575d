package k8s

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/gen/gentest"
	"github.com/ballast-os/ballast/pkg/images"
	"github.com/ballast-os/ballast/pkg/pki"
)

func controlPlaneConfig(t *testing.T) *config.Config {
	t.Helper()
	return gentest.New(t).ControlPlane.WithDefaults()
}

var testNode = Node{Name: "lab-cp1", AdvertiseIP: "10.5.0.2", LocalEndpoint: "https://127.0.0.1:7445", EtcdServer: "https://10.5.0.2:2379"}

func servingCert(t *testing.T, p Paths) *x509Cert {
	t.Helper()
	data, err := os.ReadFile(p.file("apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCert(data)
	if err != nil {
		t.Fatal(err)
	}
	return &x509Cert{c.SerialNumber.String(), c.DNSNames, c.NotAfter.Sub(c.NotBefore), c}
}

func TestSync(t *testing.T) {
	all := []string{images.Scheduler, images.ControllerManager, images.APIServer}
	now := time.Now()
	for _, tc := range []struct {
		name        string
		change      func(cfg *config.Config, n *Node)
		at          time.Duration // time after the first sync
		wantChanged []string
		wantNewCert bool
	}{
		{"nothing changed", func(*config.Config, *Node) {}, 0, nil, false},
		{"a new apiserver certSAN", func(c *config.Config, _ *Node) { c.Cluster.APIServer.CertSANs = []string{"api.example.com"} }, 0, []string{images.APIServer}, true},
		{"a new node address", func(_ *config.Config, n *Node) { n.AdvertiseIP = "10.5.0.9" }, 0, []string{images.APIServer}, true},
		{"a shorter lifetime", func(c *config.Config, _ *Node) { c.Cluster.CertificateLifetime = config.Duration(time.Hour) }, 0, all, true},
		{"a third of the lifetime left", func(*config.Config, *Node) {}, 245 * 24 * time.Hour, all, true},
		{"not yet a third left", func(*config.Config, *Node) {}, 200 * 24 * time.Hour, nil, false},
		{"a new encryption key", func(c *config.Config, _ *Node) {
			c.Cluster.SecretboxEncryptionSecret = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
		}, 0, []string{images.APIServer}, false},
		{"the load balancer moved", func(_ *config.Config, n *Node) { n.LocalEndpoint = "https://127.0.0.9:7445" }, 0,
			[]string{images.Scheduler, images.ControllerManager}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := controlPlaneConfig(t)
			p := Paths{Dir: filepath.Join(t.TempDir(), "k8s")}
			r, err := Sync(p, cfg, testNode, now)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.Changed, all) {
				t.Fatalf("first sync changed %v, want %v", r.Changed, all)
			}
			if want := now.Add(config.DefaultCertificateLifetime.Std() * 2 / 3); r.Next.Sub(want).Abs() > 2*time.Hour {
				t.Fatalf("next renewal %s, want about %s", r.Next, want)
			}
			before := servingCert(t, p)
			n := testNode
			tc.change(cfg, &n)
			r, err = Sync(p, cfg, n, now.Add(tc.at))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.Changed, tc.wantChanged) {
				t.Fatalf("changed %v, want %v", r.Changed, tc.wantChanged)
			}
			after := servingCert(t, p)
			if (after.serial != before.serial) != tc.wantNewCert {
				t.Fatalf("serving certificate reissued: %v, want %v", after.serial != before.serial, tc.wantNewCert)
			}
		})
	}
}

func TestSyncFilesAndSANs(t *testing.T) {
	cfg := controlPlaneConfig(t)
	p := Paths{Dir: t.TempDir()}
	if _, err := Sync(p, cfg, testNode, time.Now()); err != nil {
		t.Fatal(err)
	}
	c := servingCert(t, p)
	for _, want := range []string{"kubernetes", "kubernetes.default.svc.cluster.local", "lab-cp1", "localhost"} {
		if !slices.Contains(c.dns, want) {
			t.Errorf("apiserver certificate lacks DNS name %s: %v", want, c.dns)
		}
	}
	var ips []string
	for _, ip := range c.cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	for _, want := range []string{"127.0.0.1", "10.5.0.2", "10.5.0.254", "10.96.0.1"} {
		if !slices.Contains(ips, want) {
			t.Errorf("apiserver certificate lacks IP %s: %v", want, ips)
		}
	}
	for name, mode := range map[string]os.FileMode{
		"apiserver.key": 0o600, "ca.key": 0o600, "sa.key": 0o600, encryptionConfig: 0o600,
		controllerManagerKC: 0o600, schedulerKC: 0o600, "apiserver.crt": 0o644, saPub: 0o644,
	} {
		st, err := os.Stat(p.file(name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %o, want %o", name, st.Mode().Perm(), mode)
		}
	}
	enc, _ := os.ReadFile(p.file(encryptionConfig))
	if !strings.Contains(string(enc), "secretbox") || !strings.Contains(string(enc), cfg.Cluster.SecretboxEncryptionSecret) {
		t.Fatalf("encryption config:\n%s", enc)
	}
	// A key that does not match its certificate (a crash between the two
	// writes) is reissued.
	if err := os.WriteFile(p.file("apiserver.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Sync(p, cfg, testNode, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Changed, []string{images.APIServer}) {
		t.Fatalf("changed %v after a broken key", r.Changed)
	}
}

func TestSyncRefusesMissingSecrets(t *testing.T) {
	cfg := controlPlaneConfig(t)
	cfg.Cluster.AggregatorCA = nil
	if _, err := Sync(Paths{Dir: t.TempDir()}, cfg, testNode, time.Now()); err == nil || !strings.Contains(err.Error(), "cluster.aggregatorCA") {
		t.Fatalf("err = %v, want one naming cluster.aggregatorCA", err)
	}
}

func TestComponentsExtraArgsWin(t *testing.T) {
	cfg := controlPlaneConfig(t)
	cfg.Cluster.APIServer.ExtraArgs = map[string]string{"audit-log-path": "/dev/null", "v": "2"}
	cfg.Cluster.Scheduler.Image = "registry.example/kube-scheduler:v1.36.3"
	comps, err := Components(cfg, testNode, Paths{Dir: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	api := comps[0]
	for _, want := range []string{"--audit-log-path=/dev/null", "--v=2", "--etcd-servers=https://10.5.0.2:2379",
		"--advertise-address=10.5.0.2", "--authorization-mode=Node,RBAC", "--encryption-provider-config=/etc/kubernetes/encryption-config.yaml"} {
		if !slices.Contains(api.Args, want) {
			t.Errorf("apiserver args lack %s: %v", want, api.Args)
		}
	}
	if slices.Contains(api.Args, "--audit-log-path=-") {
		t.Error("the default audit-log-path survived its extraArg")
	}
	if api.Image != images.Ref(images.APIServer, cfg.Cluster.KubernetesVersion) || comps[2].Image != "registry.example/kube-scheduler:v1.36.3" {
		t.Fatalf("images %s, %s", api.Image, comps[2].Image)
	}
	if m := comps[2].Mounts; len(m) != 1 || m[0].Source != "/x/"+schedulerKC {
		t.Fatalf("the scheduler mounts %v, want its kubeconfig only", m)
	}
	noEtcd := testNode
	noEtcd.EtcdServer = ""
	if _, err := Components(cfg, noEtcd, Paths{Dir: "/x"}); err == nil {
		t.Fatal("components without an etcd server")
	}
}

type x509Cert struct {
	serial string
	dns    []string
	life   time.Duration
	cert   *x509.Certificate
}

// TestSyncPutsBackRemovedFiles: a file removed behind Sync's back (the
// k8s-certs controller's periodic resync runs it) is written again, and the
// component that reads it is named for a restart.
func TestSyncPutsBackRemovedFiles(t *testing.T) {
	cfg := controlPlaneConfig(t)
	p := Paths{Dir: filepath.Join(t.TempDir(), "k8s")}
	now := time.Now()
	if _, err := Sync(p, cfg, testNode, now); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"apiserver.key", []string{images.APIServer}},
		{schedulerKC, []string{images.Scheduler}},
	} {
		if err := os.Remove(p.file(tc.file)); err != nil {
			t.Fatal(err)
		}
		r, err := Sync(p, cfg, testNode, now)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(r.Changed, tc.want) {
			t.Fatalf("%s removed: changed %v, want %v", tc.file, r.Changed, tc.want)
		}
		if _, err := os.Stat(p.file(tc.file)); err != nil {
			t.Fatalf("%s not written again: %v", tc.file, err)
		}
	}
}
