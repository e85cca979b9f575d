package k8s

import (
	"encoding/base64"
	"fmt"
)

// EncryptionConfig renders the apiserver's EncryptionConfiguration: Secrets
// are written with secretbox under the config's key; identity stays as a
// reader so Secrets written before encryption was on can still be read.
func EncryptionConfig(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(secret)
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("%w: cluster.secretboxEncryptionSecret must be 32 bytes, base64-encoded", ErrMissingSecret)
	}
	return []byte(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - secretbox:
          keys:
            - name: key1
              secret: ` + secret + `
      - identity: {}
`), nil
}

// AuditPolicy logs request metadata of every call but the noisy read-only
// ones of the components themselves; Secret and ConfigMap bodies are never
// logged.
const AuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - RequestReceived
rules:
  - level: None
    users: ["system:kube-proxy"]
    verbs: ["watch"]
  - level: None
    nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version"]
  - level: None
    resources:
      - group: "coordination.k8s.io"
        resources: ["leases"]
    verbs: ["get", "update"]
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps"]
  - level: Metadata
    omitStages:
      - RequestReceived
`
