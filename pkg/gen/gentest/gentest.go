// Package gentest gives tests the machine configs `nodectl gen config`
// would: a new secrets bundle, a control plane's and a worker's config for
// the cluster "lab" at https://10.5.0.254:6443.
package gentest

import (
	"testing"

	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/gen"
	"github.com/ballast-os/ballast/pkg/secrets"
)

// Endpoint is the generated cluster's endpoint.
const Endpoint = "https://10.5.0.254:6443"

// Cluster is a generated cluster: its secrets and both configs.
type Cluster struct {
	Secrets *secrets.Bundle
	// ControlPlaneYAML and WorkerYAML are the configs as written.
	ControlPlaneYAML, WorkerYAML []byte
	ControlPlane, Worker         *config.Config
}

// New generates a cluster; the test fails if that fails.
func New(t testing.TB) Cluster {
	t.Helper()
	b, err := secrets.Generate()
	if err != nil {
		t.Fatal(err)
	}
	out, err := gen.Generate(gen.Options{ClusterName: "lab", Endpoint: Endpoint, Secrets: b})
	if err != nil {
		t.Fatal(err)
	}
	c := Cluster{Secrets: b, ControlPlaneYAML: out.ControlPlane, WorkerYAML: out.Worker}
	if c.ControlPlane, err = config.Load(out.ControlPlane); err != nil {
		t.Fatal(err)
	}
	if c.Worker, err = config.Load(out.Worker); err != nil {
		t.Fatal(err)
	}
	return c
}
