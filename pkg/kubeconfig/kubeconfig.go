// Package kubeconfig renders kubeconfig files with embedded certificates and
// merges one into another (as kubectl does with --kubeconfig lists): entries
// of the same name are replaced, the others kept.
package kubeconfig

import (
	"encoding/base64"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// New renders a kubeconfig with one cluster, user and context, the
// certificates embedded.
func New(clusterName, server string, caPEM, crtPEM, keyPEM []byte, user string) ([]byte, error) {
	return render(clusterName, server, caPEM, user, kcUser{
		ClientCertificateData: base64.StdEncoding.EncodeToString(crtPEM),
		ClientKeyData:         base64.StdEncoding.EncodeToString(keyPEM)})
}

// NewToken renders a kubeconfig whose user authenticates with a bearer
// token (the kubelet's bootstrap kubeconfig).
func NewToken(clusterName, server string, caPEM []byte, token, user string) ([]byte, error) {
	return render(clusterName, server, caPEM, user, kcUser{Token: token})
}

// NewFiles renders a kubeconfig whose user's certificate and key are files
// (which their owner rotates, like the kubelet's).
func NewFiles(clusterName, server string, caPEM []byte, crtFile, keyFile, user string) ([]byte, error) {
	return render(clusterName, server, caPEM, user, kcUser{ClientCertificate: crtFile, ClientKey: keyFile})
}

// render is a kubeconfig with one cluster (the CA embedded), one user and
// the context joining them, made current.
func render(clusterName, server string, caPEM []byte, user string, u kcUser) ([]byte, error) {
	ctxName := user + "@" + clusterName
	kc := kubeconfig{
		APIVersion: "v1", Kind: "Config", CurrentContext: ctxName,
		Clusters: []namedCluster{{Name: clusterName, Cluster: kcCluster{
			Server: server, CertificateAuthorityData: base64.StdEncoding.EncodeToString(caPEM)}}},
		Users:    []namedUser{{Name: user, User: u}},
		Contexts: []namedContext{{Name: ctxName, Context: kcContext{Cluster: clusterName, User: user}}},
	}
	out, err := yaml.Marshal(kc)
	if err != nil {
		return nil, fmt.Errorf("render kubeconfig: %w", err)
	}
	return out, nil
}

// ClientCert returns the client certificate embedded in a
// kubeconfig written by New.
func ClientCert(data []byte) (server string, crtPEM []byte, err error) {
	var kc kubeconfig
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return "", nil, fmt.Errorf("parse kubeconfig: %w", err)
	}
	if len(kc.Users) != 1 || len(kc.Clusters) != 1 {
		return "", nil, fmt.Errorf("parse kubeconfig: want one user and one cluster")
	}
	crt, err := base64.StdEncoding.DecodeString(kc.Users[0].User.ClientCertificateData)
	if err != nil {
		return "", nil, fmt.Errorf("parse kubeconfig certificate: %w", err)
	}
	return kc.Clusters[0].Cluster.Server, crt, nil
}

type kubeconfig struct {
	APIVersion     string         `yaml:"apiVersion"`
	Kind           string         `yaml:"kind"`
	Clusters       []namedCluster `yaml:"clusters"`
	Users          []namedUser    `yaml:"users"`
	Contexts       []namedContext `yaml:"contexts"`
	CurrentContext string         `yaml:"current-context"`
}

type namedCluster struct {
	Name    string    `yaml:"name"`
	Cluster kcCluster `yaml:"cluster"`
}

type kcCluster struct {
	Server                   string `yaml:"server"`
	CertificateAuthorityData string `yaml:"certificate-authority-data"`
}

type namedUser struct {
	Name string `yaml:"name"`
	User kcUser `yaml:"user"`
}

type kcUser struct {
	ClientCertificateData string `yaml:"client-certificate-data,omitempty"`
	ClientKeyData         string `yaml:"client-key-data,omitempty"`
	Token                 string `yaml:"token,omitempty"`
	ClientCertificate     string `yaml:"client-certificate,omitempty"`
	ClientKey             string `yaml:"client-key,omitempty"`
}

type namedContext struct {
	Name    string    `yaml:"name"`
	Context kcContext `yaml:"context"`
}

type kcContext struct {
	Cluster string `yaml:"cluster"`
	User    string `yaml:"user"`
}

// Merge merges the kubeconfig add into base (either may be empty): clusters,
// users and contexts of add replace those of the same name in base; other
// entries and fields of base are kept. current-context becomes add's.
func Merge(base, add []byte) ([]byte, error) {
	var b, a map[string]any
	if err := yaml.Unmarshal(base, &b); err != nil {
		return nil, fmt.Errorf("parse kubeconfig: %w", err)
	}
	if err := yaml.Unmarshal(add, &a); err != nil {
		return nil, fmt.Errorf("parse new kubeconfig: %w", err)
	}
	if b == nil {
		b = map[string]any{"apiVersion": "v1", "kind": "Config"}
	}
	for _, key := range []string{"clusters", "users", "contexts"} {
		merged, err := mergeNamed(b[key], a[key])
		if err != nil {
			return nil, fmt.Errorf("merge kubeconfig %s: %w", key, err)
		}
		b[key] = merged
	}
	if cc, ok := a["current-context"]; ok {
		b["current-context"] = cc
	}
	out, err := yaml.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("render kubeconfig: %w", err)
	}
	return out, nil
}

func mergeNamed(base, add any) ([]any, error) {
	bl, _ := base.([]any)
	al, _ := add.([]any)
	for _, e := range bl {
		if _, ok := e.(map[string]any); !ok {
			return nil, fmt.Errorf("entry is not a mapping")
		}
	}
	out := append([]any(nil), bl...)
	for _, e := range al {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("entry is not a mapping")
		}
		name, _ := m["name"].(string)
		replaced := false
		for i, o := range out {
			if om, ok := o.(map[string]any); ok && om["name"] == name {
				out[i], replaced = e, true
				break
			}
		}
		if !replaced {
			out = append(out, e)
		}
	}
	return out, nil
}
