// Package health checks a cluster the way an operator would: every node
// answers, every service is up and healthy, etcd has exactly the control
// planes as started voting members, one leader and no alarms, the VIP has
// one holder, and, where the control planes run Kubernetes, every
// kube-apiserver is ready, the endpoint answers and the leader leases are
// held.
package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/nodeconfig"
)

// Node is one node to check.
type Node struct {
	Address string // host or host:port
	Role    string // controlplane or worker
}

// Check is one named result; Err is nil when it passed.
type Check struct {
	Name string
	Err  error
}

// Dialer opens a client to a node; a control-plane node (Role) must present
// a control-plane certificate.
type Dialer func(n Node) (*client.Client, error)

// ContextDialer dials with a nodeconfig context's credentials.
func ContextDialer(nctx *nodeconfig.Context) Dialer {
	return func(n Node) (*client.Client, error) {
		opts, err := client.FromContext(nctx, n.Address)
		if err != nil {
			return nil, err
		}
		opts.RequireControlPlane = n.Role == config.TypeControlPlane
		return client.New(opts)
	}
}

// Run performs every check once.
func Run(ctx context.Context, nodes []Node, dial Dialer) []Check {
	var cps []Node
	for _, n := range nodes {
		if n.Role == config.TypeControlPlane {
			cps = append(cps, n)
		}
	}
	clients := map[string]*client.Client{}
	var checks []Check
	for _, n := range nodes {
		c, err := dial(n)
		if err == nil {
			_, err = c.Version(ctx, &machine.VersionRequest{})
		}
		if err != nil {
			checks = append(checks, Check{"node " + n.Address + " answers", err})
			if c != nil {
				c.Close()
			}
			continue
		}
		defer c.Close()
		clients[n.Address] = c
		checks = append(checks, Check{"node " + n.Address + " answers", nil})
	}
	for _, n := range nodes {
		if c := clients[n.Address]; c != nil {
			checks = append(checks, Check{"services healthy on " + n.Address, servicesHealthy(ctx, c)})
		}
	}
	if len(cps) > 0 {
		checks = append(checks, etcdChecks(ctx, cps, clients)...)
		if c, ok := vipCheck(ctx, cps, clients); ok {
			checks = append(checks, c)
		}
		if k, ok := kubernetesChecks(ctx, cps, clients, len(nodes)); ok {
			checks = append(checks, k...)
		}
	}
	return checks
}

// vipCheck requires exactly one control plane to hold the VIP, and every
// control plane to name that one as the holder. ok is false when no control
// plane has a VIP configured.
func vipCheck(ctx context.Context, cps []Node, clients map[string]*client.Client) (Check, bool) {
	var ip string
	var holders, named []string
	for _, n := range cps {
		c := clients[n.Address]
		if c == nil {
			continue
		}
		st, err := c.VIPStatus(ctx, &machine.VIPStatusRequest{})
		if err != nil || st.GetIp() == "" {
			continue
		}
		ip = st.GetIp()
		if st.GetLocal() {
			holders = append(holders, n.Address)
		}
		named = append(named, st.GetHolder())
	}
	if ip == "" {
		return Check{}, false
	}
	name := "VIP " + ip + " held by one control plane"
	switch {
	case len(holders) == 0:
		return Check{name, fmt.Errorf("no control plane holds it")}, true
	case len(holders) > 1:
		return Check{name, fmt.Errorf("held by %s at once", strings.Join(holders, " and "))}, true
	}
	for _, h := range named {
		if h != named[0] {
			return Check{name, fmt.Errorf("the control planes disagree on the holder: %v", named)}, true
		}
	}
	return Check{name, nil}, true
}

func servicesHealthy(ctx context.Context, c *client.Client) error {
	resp, err := c.ServiceList(ctx, &machine.ServiceListRequest{})
	if err != nil {
		return err
	}
	var bad []string
	for _, s := range resp.GetServices() {
		switch {
		case s.GetState() == "Finished":
		case s.GetState() != "Running":
			msg := fmt.Sprintf("%s is %s", s.GetId(), s.GetState())
			if ev := s.GetEvents(); len(ev) > 0 && ev[len(ev)-1].GetMessage() != "" {
				// Why: e.g. the kubelet's own words about a flag it rejects.
				msg += ": " + ev[len(ev)-1].GetMessage()
			}
			bad = append(bad, msg)
		case !s.GetHealth().GetUnknown() && !s.GetHealth().GetHealthy():
			bad = append(bad, fmt.Sprintf("%s is unhealthy: %s", s.GetId(), s.GetHealth().GetLastMessage()))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return nil
}

func etcdChecks(ctx context.Context, cps []Node, clients map[string]*client.Client) []Check {
	var checks []Check
	// Members and alarms, as the first control plane that answers sees them.
	var (
		via     machine.EtcdServiceClient
		members *machine.EtcdMembersResponse
		err     error
	)
	for _, n := range cps {
		if c := clients[n.Address]; c != nil {
			via = machine.NewEtcdServiceClient(c.Conn())
			if members, err = via.EtcdMembers(ctx, &machine.EtcdMembersRequest{}); err == nil {
				break
			}
		}
	}
	if members == nil {
		if err == nil {
			err = fmt.Errorf("no control-plane node answers")
		}
		return []Check{{"etcd members listed", err}}
	}
	var problems []string
	hosts := map[string]bool{}
	for _, m := range members.GetMembers() {
		switch {
		case !m.GetStarted():
			problems = append(problems, fmt.Sprintf("member %x is not started", m.GetId()))
		case m.GetIsLearner():
			problems = append(problems, fmt.Sprintf("member %s is a learner", m.GetName()))
		}
		for _, u := range m.GetPeerUrls() {
			if pu, err := url.Parse(u); err == nil {
				hosts[pu.Hostname()] = true
			}
		}
	}
	checks = append(checks, Check{"etcd members started and voting", joinProblems(problems)})

	want := make([]string, 0, len(cps))
	for _, n := range cps {
		want = append(want, host(n.Address))
	}
	var got []string
	for h := range hosts {
		got = append(got, h)
	}
	sort.Strings(want)
	sort.Strings(got)
	var memErr error
	if !slices.Equal(want, got) {
		memErr = fmt.Errorf("members are at %v, control-plane nodes are %v", got, want)
	}
	checks = append(checks, Check{"etcd members are the control-plane nodes", memErr})

	leaders := map[uint64]bool{}
	var statusErrs []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range cps {
		c := clients[n.Address]
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := machine.NewEtcdServiceClient(c.Conn()).EtcdStatus(ctx, &machine.EtcdStatusRequest{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				statusErrs = append(statusErrs, n.Address+": "+err.Error())
				return
			}
			leaders[st.GetLeader()] = true
		}()
	}
	wg.Wait()
	var leaderErr error
	switch {
	case len(statusErrs) > 0:
		leaderErr = fmt.Errorf("%s", strings.Join(statusErrs, "; "))
	case len(leaders) != 1 || leaders[0]:
		leaderErr = fmt.Errorf("members disagree on the leader or have none: %v", keys(leaders))
	}
	checks = append(checks, Check{"etcd has one leader", leaderErr})

	alarms, alarmErr := via.EtcdAlarmList(ctx, &machine.EtcdAlarmListRequest{})
	if alarmErr == nil && len(alarms.GetAlarms()) > 0 {
		alarmErr = fmt.Errorf("alarms: %v", alarms.GetAlarms())
	}
	checks = append(checks, Check{"etcd has no alarms", alarmErr})
	return checks
}

func joinProblems(p []string) error {
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(p, "; "))
}

func host(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return strings.Trim(addr, "[]")
}

func keys(m map[uint64]bool) []string {
	var out []string
	for k := range m {
		out = append(out, fmt.Sprintf("%x", k))
	}
	sort.Strings(out)
	return out
}

// Failed returns the failed checks.
func Failed(checks []Check) []Check {
	var out []Check
	for _, c := range checks {
		if c.Err != nil {
			out = append(out, c)
		}
	}
	return out
}

// Wait runs the checks until they all pass or timeout ends (0: check once).
// Progress lines go to w when the set of failing checks changes.
func Wait(ctx context.Context, nodes []Node, dial Dialer, timeout time.Duration, w io.Writer) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		checks := Run(cctx, nodes, dial)
		cancel()
		failed := Failed(checks)
		if len(failed) == 0 {
			return nil
		}
		var names []string
		for _, f := range failed {
			names = append(names, f.Name)
		}
		summary := fmt.Sprintf("%d/%d checks pass; waiting for: %s", len(checks)-len(failed), len(checks), strings.Join(names, ", "))
		if summary != last && w != nil {
			fmt.Fprintln(w, "  "+summary)
			last = summary
		}
		if timeout <= 0 || time.Now().After(deadline) || ctx.Err() != nil {
			var lines []string
			for _, f := range failed {
				lines = append(lines, fmt.Sprintf("  - %s: %v", f.Name, f.Err))
			}
			return fmt.Errorf("%w:\n%s", ErrUnhealthy, strings.Join(lines, "\n"))
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// ErrUnhealthy is returned by Wait when checks still fail.
var ErrUnhealthy = errors.New("cluster is not healthy")
