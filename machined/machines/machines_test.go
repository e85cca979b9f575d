package machines

import (
	"net/url"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startEtcd runs a real single-member etcd on loopback ports the kernel picks
// (unix sockets would do too; TCP is what machined uses).
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cu, _ := url.Parse("http://127.0.0.1:0")
	pu, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Clients[0].Addr().String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// TestClaims: the latest verified claim owns an address. A renamed worker
// takes its address from its old record (deleted when emptied); a worker
// cannot take a control plane's address; a control plane recording itself
// takes its addresses from anyone.
func TestClaims(t *testing.T) {
	cli := startEtcd(t)
	ctx := t.Context()
	steps := []struct {
		put  Record
		want map[string][]string // name -> addresses after the step
	}{
		{Record{Name: "cp1", Role: RoleControlPlane, Addresses: []string{"10.0.0.2"}}, map[string][]string{"cp1": {"10.0.0.2"}}},
		{Record{Name: "w1", Role: RoleWorker, Addresses: []string{"10.0.0.5"}}, map[string][]string{"cp1": {"10.0.0.2"}, "w1": {"10.0.0.5"}}},
		// w1 renamed w1b: the old record loses the address and goes.
		{Record{Name: "w1b", Role: RoleWorker, Addresses: []string{"10.0.0.5"}}, map[string][]string{"cp1": {"10.0.0.2"}, "w1b": {"10.0.0.5"}}},
		// A worker claiming a control plane's address does not take it
		// (the signer refuses such a caller before; the registry holds too).
		{Record{Name: "evil", Role: RoleWorker, Addresses: []string{"10.0.0.2"}}, map[string][]string{"cp1": {"10.0.0.2"}, "w1b": {"10.0.0.5"}, "evil": {"10.0.0.2"}}},
		// A control plane re-asserting itself unchanged takes its address back.
		{Record{Name: "cp1", Role: RoleControlPlane, Addresses: []string{"10.0.0.2"}}, map[string][]string{"cp1": {"10.0.0.2"}, "w1b": {"10.0.0.5"}}},
		// A control plane recording itself owns its addresses.
		{Record{Name: "cp1", Role: RoleControlPlane, Addresses: []string{"10.0.0.2", "10.0.0.3"}}, map[string][]string{"cp1": {"10.0.0.2", "10.0.0.3"}, "w1b": {"10.0.0.5"}}},
	}
	for i, s := range steps {
		if err := Put(ctx, cli, s.put); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		all, err := List(ctx, cli)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]string{}
		for _, r := range all {
			got[r.Name] = r.Addresses
		}
		if len(got) != len(s.want) {
			t.Fatalf("step %d: records %v, want %v", i, got, s.want)
		}
		for name, addrs := range s.want {
			if !slices.Equal(got[name], addrs) {
				t.Fatalf("step %d: %s has %v, want %v (all: %v)", i, name, got[name], addrs, got)
			}
		}
	}
	if _, ok, err := Get(ctx, cli, "w1"); ok || err != nil {
		t.Fatalf("w1 still recorded (%v)", err)
	}
	if err := Put(ctx, cli, Record{Name: "nameless"}); err == nil {
		t.Fatal("a record without addresses was stored")
	}
}
