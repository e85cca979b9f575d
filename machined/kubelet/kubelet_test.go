package kubelet

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/k8s"
	"github.com/ballast-os/ballast/pkg/config"
	"github.com/ballast-os/ballast/pkg/gen/gentest"
)

func TestErrorLine(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		{[]string{"I1123 starting", `E1123 15:04:05.000000 1 run.go:72] "command failed" err="unknown flag: --x"`, "exiting"}, `E1123 15:04:05.000000 1 run.go:72] "command failed" err="unknown flag: --x"`},
		{[]string{"I1123 starting", "bye"}, "bye"},
		{nil, ""},
	} {
		if got := errorLine(tc.lines); got != tc.want {
			t.Errorf("errorLine(%q) = %q, want %q", tc.lines, got, tc.want)
		}
	}
}

// TestRunnerRestartsOnLiveChange runs the Runner with a stand-in kubelet (a
// script that waits) and checks what it did: the kubelet's files written
// from the config, the client certificate asked for, the flags passed; a
// config change to extraArgs or to the kubelet's release restarts it, a
// change elsewhere does not.
func TestRunnerRestartsOnLiveChange(t *testing.T) {
	for name, change := range map[string]func(*config.Config){
		"machine.kubelet.extraArgs": func(c *config.Config) { c.Machine.Kubelet.ExtraArgs = map[string]string{"v": "4"} },
		"machine.kubelet.version":   func(c *config.Config) { c.Machine.Kubelet.Version = "v1.36.1" },
		"cluster.kubernetesVersion": func(c *config.Config) { c.Cluster.KubernetesVersion = "v1.36.1" },
	} {
		t.Run(name, func(t *testing.T) { testRunnerRestarts(t, name, change) })
	}
}

func testRunnerRestarts(t *testing.T, field string, change func(*config.Config)) {
	cfg := gentest.New(t).ControlPlane
	dir := t.TempDir()
	bin := filepath.Join(dir, "kubelet")
	argsFile := filepath.Join(dir, "args")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"$@\" > "+argsFile+"\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	cur, changed := cfg, make(chan struct{})
	set := func(c *config.Config) {
		mu.Lock()
		defer mu.Unlock()
		cur = c
		close(changed)
		changed = make(chan struct{})
	}
	restarts := make(chan struct{}, 4)
	var certAsked bool
	p := k8s.NewKubeletPaths(dir)
	r := &Runner{
		Inputs: Inputs{
			Config: func() (*config.Config, <-chan struct{}) {
				mu.Lock()
				defer mu.Unlock()
				return cur, changed
			},
			Node: func(*config.Config) k8s.KubeletNode {
				return k8s.KubeletNode{Name: "w1", IP: "10.5.0.5", LocalEndpoint: "https://127.0.0.1:7445", CRISocket: "/run/containerd.sock", CgroupRoot: "/ballast/w1"}
			},
			Resolvers: func(*config.Config) []string { return []string{"10.5.0.1"} },
			Paths:     p,
		},
		Binary:     func(*config.Config) (string, error) { return bin, nil },
		ClientCert: func(context.Context, *config.Config, k8s.KubeletNode, io.Writer) error { certAsked = true; return nil },
		Restart:    func(context.Context) error { restarts <- struct{}{}; return nil },
	}
	ctx, cancel := context.WithCancel(context.Background())
	startedc := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, io.Discard, func() { close(startedc) }) }()
	select {
	case <-startedc:
	case err := <-done:
		t.Fatalf("the kubelet did not start: %v", err)
	}
	if !certAsked {
		t.Fatal("the kubelet started without its client certificate being made current")
	}
	if rc, err := os.ReadFile(p.ResolvConf()); err != nil || string(rc) != "nameserver 10.5.0.1\n" {
		t.Fatalf("resolv.conf %q (%v)", rc, err)
	}
	if _, err := os.Stat(p.Config()); err != nil {
		t.Fatalf("kubelet config: %v", err)
	}

	other := *cfg
	other.Machine.Time.BootTimeout = config.Duration(time.Minute) // not the kubelet's
	set(&other)
	select {
	case <-restarts:
		t.Fatal("a change that is not the kubelet's restarted it")
	case <-time.After(300 * time.Millisecond):
	}
	live := other
	change(&live)
	set(&live)
	select {
	case <-restarts:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s changed and the kubelet was not restarted", field)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("run ended: %v", err)
	}
	args, err := os.ReadFile(argsFile)
	if err != nil || !strings.Contains(string(args), "--config="+p.Config()) {
		t.Fatalf("kubelet args %q (%v)", args, err)
	}
}
