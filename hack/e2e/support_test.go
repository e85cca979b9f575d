package e2e

import (
	"archive/tar"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ballast-os/ballast/pkg/config"
)

// testSupportBundle runs `nodectl support` over every node as os:admin and
// checks the bundle: each node's logs, events, redacted config and status,
// etcd on the control planes, the cluster's nodes and pods — and not one
// secret of the cluster (its tokens, CA and service-account keys, the
// secretbox secret, the admin client key), in any encoding.
func testSupportBundle(t *testing.T, c *localCluster, nodes []string) {
	out := filepath.Join(t.TempDir(), "support.tar.gz")
	r := c.must("-n", strings.Join(nodes, ","), "support", "-O", out)
	t.Logf("%s", strings.TrimSpace(r.stdout))
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("bundle %s: %v %v, want mode 0600", out, st, err)
	}
	files := readTarGz(t, out)

	for _, n := range nodes {
		for _, name := range []string{"version.json", "config.yaml", "services.json", "logs/machined.log", "logs/kubelet.log",
			"events.jsonl", "network.json", "dmesg.log"} {
			if len(files["support/"+n+"/"+name]) == 0 {
				t.Errorf("the bundle lacks %s/%s (or it is empty)", n, name)
			}
		}
		if !strings.Contains(files["support/"+n+"/config.yaml"], config.Redacted) {
			t.Errorf("%s/config.yaml is not redacted", n)
		}
	}
	for _, name := range []string{"etcd/members.json", "etcd/status.json", "logs/kube-apiserver.log"} {
		if len(files["support/"+nodes[0]+"/"+name]) == 0 {
			t.Errorf("the bundle lacks the control plane's %s", name)
		}
	}
	for _, name := range []string{"kubernetes/nodes.json", "kubernetes/pods.json", "kubernetes/events.json"} {
		if !strings.Contains(files["support/"+name], `"metadata"`) {
			t.Errorf("the bundle lacks %s: %.200q (kubernetes/errors.txt: %q)", name, files["support/"+name], files["support/kubernetes/errors.txt"])
		}
	}

	// No secret, as stored (base64) or decoded (PEM, raw), anywhere; and
	// no private key at all, PEM or base64 PEM as kubeconfigs and Ballast's
	// configs carry them (the admin kubeconfig the bundle asked for is one).
	secrets := clusterSecrets(t, c)
	var keyB64 []string
	for _, h := range []string{"-----BEGIN EC PRIVATE KEY", "-----BEGIN PRIVATE KEY", "-----BEGIN RSA PRIVATE KEY"} {
		enc := base64.StdEncoding.EncodeToString([]byte(h))
		keyB64 = append(keyB64, enc[:len(h)/3*4])
	}
	for name, data := range files {
		if strings.Contains(data, "PRIVATE KEY") {
			t.Errorf("%s holds a private key", name)
		}
		for _, k := range keyB64 {
			if strings.Contains(data, k) {
				t.Errorf("%s holds a base64 private key", name)
			}
		}
		for what, v := range secrets {
			if strings.Contains(data, v) {
				t.Errorf("%s holds the cluster's %s", name, what)
			}
		}
	}
	t.Logf("%d files checked against %d secret forms", len(files), len(secrets))
}

// clusterSecrets are the cluster's secret values from its generated
// configs and the admin's nodeconfig, each as stored and decoded.
func clusterSecrets(t *testing.T, c *localCluster) map[string]string {
	t.Helper()
	out := map[string]string{}
	add := func(what, v string) {
		if len(v) < 8 || v == config.Redacted {
			return
		}
		out[what] = v
		if dec, err := base64.StdEncoding.DecodeString(v); err == nil && len(dec) >= 8 {
			out[what+" (decoded)"] = string(dec)
		}
	}
	for _, f := range []string{"controlplane.yaml", "worker.yaml"} {
		data, err := os.ReadFile(filepath.Join(c.root, c.name, f))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Decode(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		add(f+" machine.token", cfg.Machine.Token)
		add(f+" cluster.token", cfg.Cluster.Token)
		add(f+" secretbox secret", cfg.Cluster.SecretboxEncryptionSecret)
		for what, ck := range map[string]*config.CertAndKey{"machine CA": cfg.Machine.CA, "cluster CA": cfg.Cluster.CA,
			"aggregator CA": cfg.Cluster.AggregatorCA, "kubelet serving CA": cfg.Cluster.KubeletServingCA, "etcd CA": cfg.Cluster.Etcd.CA} {
			if ck != nil {
				add(f+" "+what+" key", ck.Key)
			}
		}
		if cfg.Cluster.ServiceAccount != nil {
			add(f+" service-account key", cfg.Cluster.ServiceAccount.Key)
		}
	}
	nc, err := os.ReadFile(c.nodeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(nc), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && strings.Contains(strings.ToLower(k), "key") {
			add("nodeconfig "+k, strings.TrimSpace(v))
		}
	}
	return out
}

// readTarGz returns a tar.gz's regular files by name.
func readTarGz(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = string(data)
	}
}
