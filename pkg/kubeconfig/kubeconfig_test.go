package kubeconfig

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestNewAndClientCert(t *testing.T) {
	kc, err := New("lab", "https://10.5.0.254:6443", []byte("CA"), []byte("CRT"), []byte("KEY"), "admin")
	if err != nil {
		t.Fatal(err)
	}
	server, crt, err := ClientCert(kc)
	if err != nil {
		t.Fatal(err)
	}
	if server != "https://10.5.0.254:6443" || string(crt) != "CRT" {
		t.Fatalf("server %q cert %q", server, crt)
	}
	if !strings.Contains(string(kc), "current-context: admin@lab") {
		t.Fatalf("no current context:\n%s", kc)
	}
}

func names(t *testing.T, data []byte, key string) []string {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range m[key].([]any) {
		out = append(out, e.(map[string]any)["name"].(string))
	}
	return out
}

func TestMerge(t *testing.T) {
	lab, _ := New("lab", "https://10.5.0.254:6443", []byte("CA"), []byte("CRT"), []byte("KEY"), "admin")
	lab2, _ := New("lab", "https://10.6.0.254:6443", []byte("CA2"), []byte("CRT2"), []byte("KEY2"), "admin")
	other, _ := New("prod", "https://prod:6443", []byte("CA"), []byte("C"), []byte("K"), "ops")
	for _, tc := range []struct {
		name         string
		base, add    []byte
		wantClusters []string
		wantServer   string
	}{
		{"into an empty file", nil, lab, []string{"lab"}, "https://10.5.0.254:6443"},
		{"beside another cluster", other, lab, []string{"prod", "lab"}, "https://10.5.0.254:6443"},
		{"replacing the same name", lab, lab2, []string{"lab"}, "https://10.6.0.254:6443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Merge(tc.base, tc.add)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(t, out, "clusters"); strings.Join(got, ",") != strings.Join(tc.wantClusters, ",") {
				t.Fatalf("clusters %v, want %v", got, tc.wantClusters)
			}
			if !strings.Contains(string(out), "current-context: admin@lab") || !strings.Contains(string(out), tc.wantServer) {
				t.Fatalf("merged:\n%s", out)
			}
		})
	}
	if _, err := Merge([]byte("clusters: [1, 2]"), lab); err == nil {
		t.Fatal("a malformed kubeconfig merged")
	}
}

// TestNewTokenAndFilesLoadInClientGo: the kubelet and machined read these
// with client-go's loader.
func TestNewTokenAndFilesLoadInClientGo(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	tok, err := NewToken("demo", "https://127.0.0.1:7445", ca, "abcdef.0123456789abcdef", "kubelet-bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	files, err := NewFiles("demo", "https://127.0.0.1:7445", ca, "/pki/current.pem", "/pki/current.pem", "default-auth")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		data  []byte
		check func(*clientcmdapi.AuthInfo) bool
	}{
		{tok, func(a *clientcmdapi.AuthInfo) bool {
			return a.Token == "abcdef.0123456789abcdef" && a.ClientCertificate == ""
		}},
		{files, func(a *clientcmdapi.AuthInfo) bool {
			return a.ClientCertificate == "/pki/current.pem" && a.ClientKey == "/pki/current.pem" && a.Token == ""
		}},
	} {
		c, err := clientcmd.Load(tc.data)
		if err != nil {
			t.Fatalf("client-go cannot load:\n%s\n%v", tc.data, err)
		}
		ctx := c.Contexts[c.CurrentContext]
		if ctx == nil || c.Clusters[ctx.Cluster].Server != "https://127.0.0.1:7445" || !tc.check(c.AuthInfos[ctx.AuthInfo]) {
			t.Fatalf("loaded as %+v from:\n%s", c, tc.data)
		}
	}
}
