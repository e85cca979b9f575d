package cluster

import (
	"strings"
	"testing"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		cidr    string
		count   int
		gw      string
		first   string
		last    string
		wantErr string
	}{
		{"10.5.0.0/24", 4, "10.5.0.1", "10.5.0.2", "10.5.0.5", ""},
		{"10.5.0.7/24", 1, "10.5.0.1", "10.5.0.2", "10.5.0.2", ""},
		{"10.5.0.0/30", 1, "10.5.0.1", "10.5.0.2", "10.5.0.2", ""},
		{"10.5.0.0/30", 2, "", "", "", "room"},
		{"fd00::/64", 1, "", "", "", "IPv4"},
		{"bogus", 1, "", "", "", "IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.cidr, func(t *testing.T) {
			_, gw, addrs, err := plan(tt.cidr, tt.count)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if gw.String() != tt.gw || addrs[0].String() != tt.first || addrs[len(addrs)-1].String() != tt.last {
				t.Fatalf("gw %s addrs %v", gw, addrs)
			}
		})
	}
}

func TestNamesFitTheKernel(t *testing.T) {
	for _, name := range []string{"a", "ballast", strings.Repeat("x", 32)} {
		n := namesFor(name)
		if len(n.bridge) > 15 || len(n.veth)+len("-99") > 15 {
			t.Fatalf("%q: interface names too long: %+v", name, n)
		}
	}
	if namesFor("a").bridge == namesFor("b").bridge {
		t.Fatal("two clusters share a bridge name")
	}
}
