package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadValid(t *testing.T) {
	tests := []struct {
		name string
		text func(testing.TB) string
		cp   bool
	}{
		{"controlplane", controlPlaneYAML, true},
		{"worker", workerYAML, false},
		{"worker with explicit nulls and empty lists", func(tb testing.TB) string {
			return strings.Replace(workerYAML(tb), "  install:\n", "  certSANs: []\n  install:\n    image: ~\n", 1)
		}, false},
		{"json document", func(tb testing.TB) string {
			c := mustDecode(tb, workerYAML(tb))
			b, err := marshalJSON(c)
			if err != nil {
				tb.Fatal(err)
			}
			return string(b)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load([]byte(tt.text(t)))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if c.IsControlPlane() != tt.cp {
				t.Errorf("IsControlPlane() = %v, want %v", c.IsControlPlane(), tt.cp)
			}
		})
	}
}

func TestDecodeValues(t *testing.T) {
	c := mustDecode(t, controlPlaneYAML(t))
	if got := c.Cluster.Etcd.HeartbeatInterval.Std(); got != 100*time.Millisecond {
		t.Errorf("heartbeatInterval = %v, want 100ms", got)
	}
	if got := c.Cluster.Etcd.Snapshots.Interval.Std(); got != time.Hour {
		t.Errorf("snapshots.interval = %v, want 1h", got)
	}
	in := c.Machine.Network.Interfaces[0]
	if in.MTU != 1500 || in.VIP == nil || in.VIP.IP != "10.0.0.5" || in.Routes[0].Metric != 1024 {
		t.Errorf("interfaces[0] = %+v", in)
	}
	if !c.Machine.Network.Interfaces[1].DHCP {
		t.Error("interfaces[1].dhcp = false, want true")
	}
	if c.Cluster.APIServer.ExtraArgs["audit-log-maxage"] != "30" {
		t.Errorf("extraArgs = %v", c.Cluster.APIServer.ExtraArgs)
	}
	tmpl := controlPlaneTemplate
	for path, want := range map[string]int{
		"version":                                      1,
		"machine.network.interfaces[0].mtu":            lineOf(t, tmpl, "mtu: 1500"),
		"machine.network.interfaces[1]":                lineOf(t, tmpl, "- interface: eth1"),
		"cluster.apiServer.extraArgs.audit-log-maxage": lineOf(t, tmpl, "audit-log-maxage"),
		"cluster.etcd.snapshots.interval":              lineOf(t, tmpl, "interval: 1h"),
	} {
		if got := c.lines[path]; got != want {
			t.Errorf("line of %s = %d, want %d", path, got, want)
		}
	}
}

func TestDecodeAnchorsAndMerge(t *testing.T) {
	text := strings.Replace(workerYAML(t), `    interfaces:
      - interface: eth0
        dhcp: true
`, `    interfaces:
      - &base
        interface: eth0
        dhcp: true
        mtu: 9000
      - <<: *base
        interface: eth1
`, 1)
	c, err := Load([]byte(text))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	got := c.Machine.Network.Interfaces
	want := []Interface{{Interface: "eth0", DHCP: true, MTU: 9000}, {Interface: "eth1", DHCP: true, MTU: 9000}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("interfaces = %+v, want %+v", got, want)
	}
}

func TestDecodeNoTrailingDocument(t *testing.T) {
	// An empty trailing document ("---" at the end) is not a second config.
	if _, err := Decode([]byte(workerYAML(t) + "---\n")); err != nil {
		t.Errorf("Decode with trailing ---: %v", err)
	}
}

func TestBytesRoundTrip(t *testing.T) {
	for name, text := range map[string]string{"controlplane": controlPlaneYAML(t), "worker": workerYAML(t)} {
		t.Run(name, func(t *testing.T) {
			c := mustDecode(t, text)
			b, err := c.Bytes()
			if err != nil {
				t.Fatalf("Bytes: %v", err)
			}
			if !strings.Contains(string(b), "\n  type: ") {
				t.Errorf("Bytes does not indent by 2 spaces:\n%s", b)
			}
			c2, err := Load(b)
			if err != nil {
				t.Fatalf("Load(Bytes()): %v\n%s", err, b)
			}
			if !c.Equal(c2) {
				t.Errorf("round trip changed the config:\n%s", Diff("before", []byte(text), "after", b))
			}
		})
	}
}

func TestRedact(t *testing.T) {
	p := getPKI(t)
	c := mustDecode(t, controlPlaneYAML(t))
	orig := c.DeepCopy()
	red := c.Redact()
	if !c.Equal(orig) {
		t.Fatal("Redact modified its receiver")
	}
	b, err := red.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.secrets() {
		if strings.Contains(string(b), s) {
			t.Errorf("redacted config contains secret %.20q…", s)
		}
	}
	for _, crt := range []string{p.machineCrt, p.clusterCrt, p.aggregatorCrt, p.kubeletCrt, p.etcdCrt} {
		if !strings.Contains(string(b), crt) {
			t.Errorf("redacted config lost certificate %.20q…", crt)
		}
	}
	if got := strings.Count(string(b), Redacted); got != 9 {
		t.Errorf("found %d %q, want 9", got, Redacted)
	}
	// Empty secrets stay empty.
	w := mustDecode(t, workerYAML(t)).Redact()
	if w.Cluster.SecretboxEncryptionSecret != "" || w.Machine.CA.Key != "" || w.Cluster.ServiceAccount != nil {
		t.Errorf("Redact filled in empty secrets: %+v", w.Cluster)
	}
	if (*Config)(nil).Redact() != nil {
		t.Error("nil.Redact() != nil")
	}
}

func TestDefaults(t *testing.T) {
	c := mustDecode(t, workerYAML(t))
	d := c.WithDefaults()
	if c.Cluster.KubernetesVersion != "" || c.Cluster.Network.PodSubnets != nil {
		t.Error("WithDefaults modified its receiver")
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"dnsDomain", d.Cluster.Network.DNSDomain, DefaultDNSDomain},
		{"podSubnets", d.Cluster.Network.PodSubnets, []string{"10.244.0.0/16"}},
		{"serviceSubnets", d.Cluster.Network.ServiceSubnets, []string{"10.96.0.0/12"}},
		{"kubernetesVersion", d.Cluster.KubernetesVersion, "v1.36.3"},
		{"heartbeatInterval", d.Cluster.Etcd.HeartbeatInterval.Std(), 100 * time.Millisecond},
		{"electionTimeout", d.Cluster.Etcd.ElectionTimeout.Std(), time.Second},
		{"quotaBackendBytes", d.Cluster.Etcd.QuotaBackendBytes, int64(2 << 30)},
		{"snapshotCount", d.Cluster.Etcd.SnapshotCount, uint64(10000)},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	// Set values are kept.
	cp := mustDecode(t, controlPlaneYAML(t))
	cp.Cluster.KubernetesVersion = "v1.35.0"
	if got := cp.WithDefaults().Cluster.KubernetesVersion; got != "v1.35.0" {
		t.Errorf("kubernetesVersion = %q, want v1.35.0", got)
	}
	if got := (*Config)(nil).WithDefaults(); got == nil || got.Cluster.Network.DNSDomain != DefaultDNSDomain {
		t.Errorf("nil.WithDefaults() = %+v", got)
	}
}

func TestDeepCopy(t *testing.T) {
	c := mustDecode(t, controlPlaneYAML(t))
	d := c.DeepCopy()
	if !reflect.DeepEqual(c, d) {
		t.Fatal("DeepCopy is not equal to the original")
	}
	d.Machine.CA.Key = "changed"
	d.Machine.Network.Interfaces[0].Addresses[0] = "changed"
	d.Machine.Network.Interfaces[0].VIP.IP = "changed"
	d.Cluster.APIServer.ExtraArgs["x"] = "y"
	d.Cluster.Etcd.Snapshots.Keep = 99
	if reflect.DeepEqual(c, d) || c.Machine.CA.Key == "changed" || c.Machine.Network.Interfaces[0].Addresses[0] == "changed" ||
		c.Machine.Network.Interfaces[0].VIP.IP == "changed" || c.Cluster.APIServer.ExtraArgs["x"] == "y" || c.Cluster.Etcd.Snapshots.Keep == 99 {
		t.Error("DeepCopy shares memory with the original")
	}
	if (*Config)(nil).DeepCopy() != nil {
		t.Error("nil.DeepCopy() != nil")
	}
}

func TestErrorsMatchErrInvalid(t *testing.T) {
	errs := []error{
		&DecodeError{Path: "a", Line: 1, Message: "m"},
		&ValidationError{Problems: []Problem{{Path: "a", Message: "m"}}},
		(*Config)(nil).Validate(),
	}
	for _, err := range errs {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
		}
	}
	if got := (&DecodeError{Path: "a.b", Line: 3, Message: "bad"}).Error(); got != "a.b (line 3): bad" {
		t.Errorf("DecodeError.Error() = %q", got)
	}
	ve := &ValidationError{Problems: []Problem{{Path: "a", Line: 2, Message: "x"}, {Path: "b", Message: "y"}}}
	if got, want := ve.Error(), "invalid machine config: 2 problem(s):\n  - a (line 2): x\n  - b: y"; got != want {
		t.Errorf("ValidationError.Error() = %q, want %q", got, want)
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"interface", "dhcp", "addresses", "routes", "mtu", "vip"}
	tests := map[string]string{
		"adress": "addresses", "MTU": "mtu", "route": "routes", "interfce": "interface",
		"gateway": "", "x": "", "foo": "",
	}
	for in, want := range tests {
		if got := suggest(in, names); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
