// Package cluster creates, shows and destroys local Ballast clusters on this
// machine. The netns provisioner gives each node a named network namespace
// with a veth on a shared bridge and runs machined in container mode in it.
package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/config"
)

// ErrNotFound means no local cluster has that name.
var ErrNotFound = errors.New("no such cluster")

// State is what a cluster is made of, saved after every step of create so
// that destroy can clean up even after a crash.
type State struct {
	Name        string `json:"name"`
	Provisioner string `json:"provisioner"`
	CIDR        string `json:"cidr"`
	Gateway     string `json:"gateway"`
	Bridge      string `json:"bridge"`
	Endpoint    string `json:"endpoint"`
	// VIP is the control planes' virtual IP ("" when created without).
	VIP string `json:"vip,omitempty"`
	Dir string `json:"dir"`
	// Machined and MachinedArgs start each node's agent (StartMachined).
	Machined     string      `json:"machined"`
	MachinedArgs []string    `json:"machinedArgs,omitempty"`
	Nodes        []NodeState `json:"nodes"`
	// Artifacts is the OS artifacts directory VM nodes boot from, DHCPPID
	// the dnsmasq serving them addresses (provisioner qemu).
	Artifacts string `json:"artifacts,omitempty"`
	DHCPPID   int    `json:"dhcpPID,omitempty"`
	// HostTunables are the host's kernel settings the kubelets change
	// (kernel.panic, vm.overcommit_memory, …) as they were before create;
	// destroy puts them back.
	HostTunables map[string]string `json:"hostTunables,omitempty"`
}

// NodeState is one node of a local cluster.
type NodeState struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Address  string `json:"address"`
	Netns    string `json:"netns"`
	Veth     string `json:"veth"`
	PID      int    `json:"pid"`
	StateDir string `json:"stateDir"`
	// Zone is the node's topology.kubernetes.io/zone ("" for none).
	Zone string `json:"zone,omitempty"`
}

// DefaultRoot is where local clusters keep their state: ~/.nodectl/clusters.
func DefaultRoot() string {
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".nodectl", "clusters")
}

func statePath(root, name string) string { return filepath.Join(root, name, "cluster.json") }

// Load reads a cluster's state.
func Load(root, name string) (*State, error) {
	data, err := os.ReadFile(statePath(root, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w %q (nodectl cluster create --name %s)", ErrNotFound, name, name)
	}
	if err != nil {
		return nil, fmt.Errorf("read cluster state: %w", err)
	}
	s := &State{}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("decode cluster state %s: %w", statePath(root, name), err)
	}
	return s, nil
}

// save writes the state atomically.
func (s *State) save() error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.Dir, "cluster.json"), data, 0o600)
}

// ControlPlanes returns the control-plane nodes.
func (s *State) ControlPlanes() []NodeState {
	var out []NodeState
	for _, n := range s.Nodes {
		if n.Role == config.TypeControlPlane {
			out = append(out, n)
		}
	}
	return out
}
