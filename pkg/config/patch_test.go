package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestApplyPatches(t *testing.T) {
	dir := t.TempDir()
	cpFile := filepath.Join(dir, "cp.yaml")
	if err := os.WriteFile(cpFile, []byte("machine:\n  network:\n    hostname: from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badFile, []byte("machine:\n  netwrk: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		patches []string
		check   func(*testing.T, *Config)
		wantErr []string // substrings of the error; nil = success
		invalid bool     // error must match ErrInvalid
	}{
		{
			name:    "no patches",
			patches: nil,
			check: func(t *testing.T, c *Config) {
				if c.Machine.Network.Hostname != "cp1" {
					t.Errorf("hostname = %q", c.Machine.Network.Hostname)
				}
			},
		},
		{
			name:    "merge patch",
			patches: []string{"machine:\n  network:\n    hostname: cp9\ncluster:\n  apiServer:\n    extraArgs:\n      v: \"4\"\n"},
			check: func(t *testing.T, c *Config) {
				if c.Machine.Network.Hostname != "cp9" {
					t.Errorf("hostname = %q, want cp9", c.Machine.Network.Hostname)
				}
				want := map[string]string{"audit-log-maxage": "30", "v": "4"}
				if !reflect.DeepEqual(c.Cluster.APIServer.ExtraArgs, want) {
					t.Errorf("extraArgs = %v, want %v", c.Cluster.APIServer.ExtraArgs, want)
				}
				if len(c.Machine.Network.Interfaces) != 2 {
					t.Errorf("merge patch lost the interfaces")
				}
			},
		},
		{
			name:    "merge patch null deletes",
			patches: []string{"machine:\n  certSANs: null\ncluster:\n  etcd:\n    snapshots: null\n"},
			check: func(t *testing.T, c *Config) {
				if c.Machine.CertSANs != nil || c.Cluster.Etcd.Snapshots != nil {
					t.Errorf("certSANs = %v, snapshots = %v, want both deleted", c.Machine.CertSANs, c.Cluster.Etcd.Snapshots)
				}
			},
		},
		{
			name: "json patch in yaml",
			patches: []string{`
- op: replace
  path: /machine/network/hostname
  value: cp7
- op: add
  path: /machine/certSANs/-
  value: cp7.example.com
- op: remove
  path: /machine/network/interfaces/1
- op: copy
  from: /cluster/etcd/heartbeatInterval
  path: /cluster/etcd/electionTimeout
- op: test
  path: /machine/type
  value: controlplane
`},
			check: func(t *testing.T, c *Config) {
				if c.Machine.Network.Hostname != "cp7" {
					t.Errorf("hostname = %q, want cp7", c.Machine.Network.Hostname)
				}
				if want := []string{"cp1.example.com", "10.0.0.10", "cp7.example.com"}; !reflect.DeepEqual(c.Machine.CertSANs, want) {
					t.Errorf("certSANs = %v, want %v", c.Machine.CertSANs, want)
				}
				if len(c.Machine.Network.Interfaces) != 1 {
					t.Errorf("interfaces = %+v, want 1", c.Machine.Network.Interfaces)
				}
				if c.Cluster.Etcd.ElectionTimeout != c.Cluster.Etcd.HeartbeatInterval {
					t.Errorf("electionTimeout = %v, want a copy of heartbeatInterval", c.Cluster.Etcd.ElectionTimeout)
				}
			},
		},
		{
			name:    "json patch in json",
			patches: []string{`[{"op": "move", "from": "/machine/network/hostname", "path": "/cluster/name"}]`},
			check: func(t *testing.T, c *Config) {
				if c.Cluster.Name != "cp1" || c.Machine.Network.Hostname != "" {
					t.Errorf("cluster.name = %q, hostname = %q", c.Cluster.Name, c.Machine.Network.Hostname)
				}
			},
		},
		{
			name:    "patches apply in order",
			patches: []string{"@" + cpFile, `[{"op": "test", "path": "/machine/network/hostname", "value": "from-file"}]`},
			check: func(t *testing.T, c *Config) {
				if c.Machine.Network.Hostname != "from-file" {
					t.Errorf("hostname = %q, want from-file", c.Machine.Network.Hostname)
				}
			},
		},
		{
			name:    "unknown field from merge patch",
			patches: []string{"machine:\n  network:\n    hostnme: x\n"},
			wantErr: []string{"patch 1: ", "machine.network.hostnme", `unknown field "hostnme" (did you mean "hostname"?)`},
			invalid: true,
		},
		{
			name:    "unknown field from json patch",
			patches: []string{`[{"op": "add", "path": "/cluster/etcd/foo", "value": 1}]`},
			wantErr: []string{"cluster.etcd.foo", "unknown field"},
			invalid: true,
		},
		{
			name:    "wrong type from patch",
			patches: []string{"machine:\n  network:\n    interfaces:\n      - interface: eth0\n        mtu: big\n"},
			wantErr: []string{"machine.network.interfaces[0].mtu", `cannot use "big" as an integer`},
			invalid: true,
		},
		{
			name:    "unknown field from file names the file",
			patches: []string{"machine: {type: controlplane}", "@" + badFile},
			wantErr: []string{"patch 2 (@" + badFile + "): ", "machine.netwrk"},
			invalid: true,
		},
		{
			name:    "bad op",
			patches: []string{`[{"op": "frobnicate", "path": "/machine/type"}]`},
			wantErr: []string{"patch 1: ", "invalid JSON patch"},
		},
		{
			name:    "failing test op",
			patches: []string{`[{"op": "test", "path": "/machine/type", "value": "worker"}]`},
			wantErr: []string{"patch 1: ", "apply JSON patch"},
		},
		{
			name:    "remove missing path",
			patches: []string{`[{"op": "remove", "path": "/machine/nope"}]`},
			wantErr: []string{"patch 1: "},
		},
		{
			name:    "scalar patch",
			patches: []string{"hello"},
			wantErr: []string{"patch 1: ", "must be a mapping"},
		},
		{
			name:    "empty patch",
			patches: []string{"  \n"},
			wantErr: []string{"patch 1: ", "empty patch"},
		},
		{
			name:    "yaml syntax error",
			patches: []string{"machine: [a"},
			wantErr: []string{"patch 1: ", "parse patch"},
		},
		{
			name:    "missing file",
			patches: []string{"@" + filepath.Join(dir, "missing.yaml")},
			wantErr: []string{"patch 1 (@", "missing.yaml", "read patch"},
		},
	}
	base := []byte(controlPlaneYAML(t))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := ApplyPatches(base, tt.patches)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("ApplyPatches succeeded, want error containing %q:\n%s", tt.wantErr, out)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				if tt.invalid && !errors.Is(err, ErrInvalid) {
					t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ApplyPatches: %v", err)
			}
			c, err := Decode(out)
			if err != nil {
				t.Fatalf("Decode(result): %v\n%s", err, out)
			}
			tt.check(t, c)
		})
	}
}

func TestApplyPatchesBadDocument(t *testing.T) {
	_, err := ApplyPatches([]byte("version: v1alpha1\nbogus: 1\n"), []string{"machine: {type: worker}"})
	if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "bogus (line 2)") {
		t.Errorf("got %v, want a decode error for bogus", err)
	}
}

func TestApplyPatchesKeepsValidity(t *testing.T) {
	out, err := ApplyPatches([]byte(workerYAML(t)), []string{"machine:\n  network:\n    nameservers: [1.1.1.1]\n"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(out); err != nil {
		t.Errorf("patched worker no longer loads: %v\n%s", err, out)
	}
}
