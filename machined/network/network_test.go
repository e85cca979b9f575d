package network

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ballast-os/ballast/pkg/config"
)

func TestResolvers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		config     []string
		leases     map[string][]string
		want       string
		wantSource string
	}{
		{name: "config wins", config: []string{"1.1.1.1"}, leases: map[string][]string{"eth0": {"10.0.0.53"}}, want: "1.1.1.1", wantSource: "config"},
		{name: "from leases, in link order, no repeats", leases: map[string][]string{"eth1": {"10.0.1.53", "10.0.0.53"}, "eth0": {"10.0.0.53"}}, want: "10.0.0.53,10.0.1.53", wantSource: "dhcp"},
		{name: "none", want: "", wantSource: "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Options{})
			for name, dns := range tc.leases {
				c.leases[name] = &leaseState{dns: dns}
			}
			got, source := c.Resolvers(config.Network{Nameservers: tc.config})
			if strings.Join(got, ",") != tc.want || source != tc.wantSource {
				t.Fatalf("Resolvers = %v (%s), want %s (%s)", got, source, tc.want, tc.wantSource)
			}
		})
	}
}

func TestWriteResolversOnlyWhenChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etc", "resolv.conf")
	c := New(Options{ResolvConf: path})
	var out bytes.Buffer
	n := config.Network{Nameservers: []string{"10.5.0.1"}}
	if err := c.writeResolvers(n, &out); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "nameserver 10.5.0.1\n") {
		t.Fatalf("resolv.conf:\n%s", data)
	}
	out.Reset()
	if err := c.writeResolvers(n, &out); err != nil || out.Len() != 0 {
		t.Fatalf("an unchanged resolv.conf was written again (%v): %s", err, out.String())
	}
}
