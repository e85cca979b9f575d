package config

import (
	"testing"
)

func FuzzDecode(f *testing.F) {
	// Seeds are kept small (short stand-ins for certificates and keys, the
	// control-plane config in flow style): YAML parsing dominates the cost
	// of an execution, and large inputs make minimization slow.
	short := &testPKI{
		machineCrt: "bWNh", machineKey: "bWtleQ==", clusterCrt: "Y2Nh", clusterKey: "Y2tleQ==",
		aggregatorCrt: "YWNh", aggregatorKey: "YWtleQ==", etcdCrt: "ZWNh", etcdKey: "ZWtleQ==",
		saKey: "c2E=", secretbox: "c2I=", leafCrt: "bGVhZg==", otherKey: "b3RoZXI=",
	}
	f.Add([]byte(short.render(workerTemplate)))
	f.Add([]byte(fuzzControlPlane))
	for _, tc := range badCases {
		switch {
		case tc.raw != "":
			f.Add([]byte(tc.raw))
		case tc.worker:
			f.Add([]byte(short.render(applyEdits(f, workerTemplate, tc.edits))))
		}
	}
	for _, s := range []string{
		"",
		"---\n",
		"version: v1alpha1\n",
		"a: &a [*a]\n",
		"machine: &m {network: {interfaces: [{interface: eth0, routes: [{metric: 1}]}]}}\ncluster: {<<: *m}\n",
		"machine:\n  network:\n    interfaces:\n      - &i {interface: eth0, mtu: 1500}\n      - {<<: [*i], interface: eth1}\n",
		"machine: {network: {hostname: !!binary aGVsbG8=}}\n",
		"machine: {network: {interfaces: [{interface: eth0, mtu: abc, adress: [x]}]}}\n",
		"cluster: {etcd: {heartbeatInterval: 1h2m3.5s, snapshotCount: 0x10, quotaBackendBytes: -0}}\n",
		"cluster: {etcd: {snapshots: {interval: soon, keep: -1}}}\n",
		"cluster: {apiServer: {extraArgs: {~: x, \"\": y, 1: 2}}}\n",
		"machine: {certSANs: [\"\\xff\", \"a\\nb \", '  ']}\n",
		"machine: {type: worker, type: controlplane}\n",
		"version: [\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			return
		}
		_ = c.Validate() // must not panic either
		b, err := c.Bytes()
		if err != nil {
			t.Fatalf("Bytes after a successful Decode: %v", err)
		}
		c2, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Bytes()) failed: %v\ninput:\n%q\nencoded:\n%s", err, data, b)
		}
		if !c.Equal(c2) {
			t.Fatalf("round trip changed the config\ninput:\n%q\nencoded:\n%s\nbefore: %#v\nafter:  %#v", data, b, c, c2)
		}
	})
}

// fuzzControlPlane is a complete control-plane config in flow style.
const fuzzControlPlane = `version: v1alpha1
machine: {type: controlplane, token: abcdef.0123456789abcdef, ca: {crt: bWNh, key: bWtleQ==},
  certSANs: [cp1.example.com, 10.0.0.10], install: {disk: /dev/sda, image: installer:v1, wipe: true},
  network: {hostname: cp1, nameservers: [1.1.1.1, "::1"], interfaces: [{interface: eth0, dhcp: false,
    addresses: [10.0.0.10/24], routes: [{network: 0.0.0.0/0, gateway: 10.0.0.1, metric: 1024}],
    mtu: 1500, vip: {ip: 10.0.0.5}}]}}
cluster: {name: demo, controlPlane: {endpoint: "https://10.0.0.5:6443"},
  network: {dnsDomain: cluster.local, podSubnets: [10.244.0.0/16], serviceSubnets: [10.96.0.0/12]},
  kubernetesVersion: v1.36.3, token: 123456.abcdefghijklmnop, secretboxEncryptionSecret: c2I=,
  ca: {crt: Y2Nh, key: Y2tleQ==}, aggregatorCA: {crt: YWNh, key: YWtleQ==}, serviceAccount: {key: c2E=},
  etcd: {ca: {crt: ZWNh, key: ZWtleQ==}, peers: [10.0.0.11, "cp3:50000"], heartbeatInterval: 100ms,
    electionTimeout: 1s, quotaBackendBytes: 2147483648, snapshotCount: 10000, snapshots: {interval: 1h, keep: 5}},
  apiServer: {image: apiserver:v1, extraArgs: {v: "2"}, certSANs: [api.example.com]},
  controllerManager: {extraArgs: {node-cidr-mask-size: "24"}}, scheduler: {}}
`
