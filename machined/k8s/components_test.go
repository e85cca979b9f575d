package k8s

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/pkg/images"
)

// TestComponentMountsLeastPrivilege: each control-plane container sees
// exactly the files of the Kubernetes directory it uses, read-only; the
// cluster CA key, etcd's client key and the system:masters kubeconfig reach
// only the component that needs them (or none). A flag added later that
// names another file fails here until the table says the component needs it.
func TestComponentMountsLeastPrivilege(t *testing.T) {
	cfg := controlPlaneConfig(t)
	// extraArgs naming a file must not mount it.
	cfg.Cluster.APIServer.ExtraArgs = map[string]string{"tls-cert-file": In(caKey)}
	p := Paths{Dir: t.TempDir()}
	if _, err := Sync(p, cfg, testNode, time.Now()); err != nil {
		t.Fatal(err)
	}
	comps, err := Components(cfg, testNode, p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		images.APIServer: {"apiserver-etcd-client.crt", "apiserver-etcd-client.key", "apiserver-kubelet-client.crt",
			"apiserver-kubelet-client.key", "apiserver.crt", "apiserver.key", auditPolicy, caCrt, encryptionConfig,
			etcdCACrt, frontProxyCACrt, "front-proxy-client.crt", "front-proxy-client.key", kubeletServingCACrt, saKey, saPub},
		images.ControllerManager: {caCrt, caKey, controllerManagerKC, kubeletServingCACrt, kubeletServingCAKey, saKey},
		images.Scheduler:         {schedulerKC},
	}
	// Who may see each secret at all.
	secretUsers := map[string][]string{
		caKey:                       {images.ControllerManager},
		kubeletServingCAKey:         {images.ControllerManager},
		"apiserver-etcd-client.key": {images.APIServer},
		saKey:                       {images.APIServer, images.ControllerManager},
		encryptionConfig:            {images.APIServer},
		machinedKC:                  nil,
	}
	entries, err := os.ReadDir(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range comps {
		t.Run(c.Name, func(t *testing.T) {
			var got []string
			for _, m := range c.Mounts {
				name, ok := strings.CutPrefix(m.Source, p.Dir+"/")
				if !ok || m.Destination != In(name) {
					t.Fatalf("mount %s -> %s is not one file of the directory at its place", m.Source, m.Destination)
				}
				if !slices.Contains(m.Options, "ro") {
					t.Errorf("%s is mounted writable: %v", name, m.Options)
				}
				got = append(got, name)
			}
			slices.Sort(got)
			w := slices.Clone(want[c.Name])
			slices.Sort(w)
			if !slices.Equal(got, w) {
				t.Fatalf("mounts %v, want %v", got, w)
			}
			for file, users := range secretUsers {
				if slices.Contains(got, file) && !slices.Contains(users, c.Name) {
					t.Errorf("%s sees %s, which it has no use for", c.Name, file)
				}
			}
			// Every mounted file exists after Sync (a flag naming a file
			// Ballast never writes would make the container fail).
			for _, name := range got {
				if !slices.ContainsFunc(entries, func(e os.DirEntry) bool { return e.Name() == name }) {
					t.Errorf("%s mounts %s, which Sync does not write", c.Name, name)
				}
			}
		})
	}
}
