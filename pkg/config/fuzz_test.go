package config

import (
	"testing"
)

func FuzzDecode(f *testing.F) {
	p := getPKI(f)
	f.Add([]byte(controlPlaneYAML(f)))
	f.Add([]byte(workerYAML(f)))
	for _, tc := range badCases {
		if tc.raw != "" {
			f.Add([]byte(tc.raw))
			continue
		}
		tmpl := controlPlaneTemplate
		if tc.worker {
			tmpl = workerTemplate
		}
		f.Add([]byte(p.render(applyEdits(f, tmpl, tc.edits))))
	}
	for _, s := range []string{
		"",
		"---\n",
		"version: v1alpha1\n",
		"a: &a [*a]\n",
		"machine: &m {network: {interfaces: [{interface: eth0, routes: [{metric: 1}]}]}}\ncluster: {<<: *m}\n",
		"machine:\n  network:\n    interfaces:\n      - &i {interface: eth0, mtu: 1500}\n      - {<<: [*i], interface: eth1}\n",
		"machine: {network: {hostname: !!binary aGVsbG8=}}\n",
		"cluster: {etcd: {heartbeatInterval: 1h2m3.5s, snapshotCount: 0x10, quotaBackendBytes: -0}}\n",
		"cluster: {apiServer: {extraArgs: {~: x, \"\": y, 1: 2}}}\n",
		"machine: {certSANs: [\"\\xff\", \"a\\nb \", '  ']}\n",
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
