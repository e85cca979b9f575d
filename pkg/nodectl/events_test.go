package nodectl

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ballast-os/ballast/api/machine"
)

func TestEventLine(t *testing.T) {
	ev := &machine.Event{
		Id: 7, Time: timestamppb.New(time.Date(2026, 12, 7, 22, 58, 1, 529e6, time.UTC)),
		Kind: machine.EventKind_EVENT_KIND_ETCD_LEADER, Source: "etcd", Message: "etcd leader is cp2",
		Fields: map[string]string{"term": "4", "leader": "cp2", "empty": ""},
	}
	for _, tc := range []struct {
		name   string
		output string
		nodes  []string
		want   string
	}{
		{"one node", "table", []string{"10.5.0.2"},
			"2026-12-07T22:58:01.529Z  etcd-leader    etcd           etcd leader is cp2 leader=cp2 term=4"},
		{"several nodes: the node first", "table", []string{"10.5.0.2", "10.5.0.3"},
			"10.5.0.2  2026-12-07T22:58:01.529Z  etcd-leader    etcd           etcd leader is cp2 leader=cp2 term=4"},
		{"json", "json", []string{"10.5.0.2"},
			`{"node":"10.5.0.2","id":7,"time":"2026-12-07T22:58:01.529Z","kind":"etcd-leader","source":"etcd","message":"etcd leader is cp2","fields":{"empty":"","leader":"cp2","term":"4"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &globals{output: tc.output, nodes: tc.nodes}
			got, err := g.eventLine("10.5.0.2", ev)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("line\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestEventsRefusesYAMLAndNegativeSince(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "10.5.0.2", "events", "-o", "yaml"}, "use -o table or -o json"},
		{[]string{"-n", "10.5.0.2", "events", "--since", "-5m"}, "want a positive duration"},
	} {
		var out, errb strings.Builder
		if code := Run(tc.args, &out, &errb); code == 0 || !strings.Contains(errb.String(), tc.want) {
			t.Fatalf("nodectl %v: exit %d, stderr %q; want a refusal saying %q", tc.args, code, errb.String(), tc.want)
		}
	}
}
