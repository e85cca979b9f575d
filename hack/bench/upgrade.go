package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/ballast-os/ballast/pkg/bundle"
)

// upgradeResult holds the container-mode upgrade timings: each from the
// nodectl command to its verdict (healthy on the new slot, or back on the
// old one).
type upgradeResult struct {
	cpUpgrade, cpRollback []time.Duration
	wUpgrade, wRollback   []time.Duration
	crashBack             time.Duration // an agent that exits at start → reported, back on the old slot
	gateBack              time.Duration // a gate not passed in 5 s → reported, back on the old slot
	gateTimeout           time.Duration
	bundleBytes           int64 // _out/bundle, all parts
	sentBytes             int64 // what an upgrade that changes only the agent streams
}

// measureUpgrade creates a Kubernetes cluster of one control plane and one
// worker and upgrades each node to a second build and back, three rounds,
// then times the automatic fallbacks.
func measureUpgrade() (upgradeResult, error) {
	var r upgradeResult
	if m, err := bundle.Load("_out/bundle"); err == nil {
		for _, p := range m.Parts {
			r.bundleBytes += p.Size
		}
	}
	root, err := os.MkdirTemp("", "ballast-bench-upgrade-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(root)
	env := []string{"NODECONFIG=" + filepath.Join(root, "nodeconfig")}
	args := []string{"--name", "benchupg", "--state", root}
	defer nodectl(env, append([]string{"cluster", "destroy"}, args...)...)
	if _, err := nodectl(env, append([]string{"cluster", "create", "--controlplanes", "1", "--workers", "1", "--cidr", "10.92.0.0/24"}, args...)...); err != nil {
		return r, err
	}
	out, err := nodectl(env, append([]string{"cluster", "show", "-o", "json"}, args...)...)
	if err != nil {
		return r, err
	}
	var show struct {
		Nodes []struct{ Role, Address string } `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &show); err != nil {
		return r, fmt.Errorf("cluster show: %w", err)
	}
	var cp, w string
	for _, n := range show.Nodes {
		if n.Role == "controlplane" {
			cp = n.Address
		} else {
			w = n.Address
		}
	}

	// The second build: machined linked with another version.
	next := filepath.Join(root, "next")
	agent := filepath.Join(root, "machined-next")
	if err := buildAgent(agent, "v0.0.0-bench-next", time.Now().Add(time.Hour)); err != nil {
		return r, err
	}
	if err := benchBundle(next, agent, "v0.0.0-bench-next", time.Now().Add(time.Hour)); err != nil {
		return r, err
	}
	if st, err := os.Stat(agent); err == nil {
		r.sentBytes = st.Size()
	}
	timed := func(node string, a ...string) (time.Duration, error) {
		start := time.Now()
		_, err := nodectl(env, append([]string{"-n", node}, a...)...)
		return time.Since(start), err
	}
	rounds := 3
	if *quick {
		rounds = 1
	}
	for i := range rounds {
		for _, n := range []struct {
			addr      string
			up, rollb *[]time.Duration
		}{{cp, &r.cpUpgrade, &r.cpRollback}, {w, &r.wUpgrade, &r.wRollback}} {
			up, err := timed(n.addr, "upgrade", "--bundle", next)
			if err != nil {
				return r, err
			}
			back, err := timed(n.addr, "rollback")
			if err != nil {
				return r, err
			}
			*n.up, *n.rollb = append(*n.up, up), append(*n.rollb, back)
			fmt.Printf("round %d, %s: upgrade %s, rollback %s\n", i+1, n.addr, up.Round(100*time.Millisecond), back.Round(100*time.Millisecond))
			if _, err := nodectl(env, "health", "--wait-timeout", "120s"); err != nil {
				return r, err
			}
		}
	}

	broken := filepath.Join(root, "broken-machined")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		return r, err
	}
	brokenDir := filepath.Join(root, "broken")
	if err := benchBundle(brokenDir, broken, "v0.0.0-bench-broken", time.Now().Add(2*time.Hour)); err != nil {
		return r, err
	}
	if r.crashBack, err = timed(w, "upgrade", "--bundle", brokenDir); err == nil {
		return r, fmt.Errorf("a broken build was not reported as failed")
	}
	r.gateTimeout = 5 * time.Second
	if r.gateBack, err = timed(w, "upgrade", "--bundle", next, "--health-timeout", r.gateTimeout.String()); err == nil {
		return r, fmt.Errorf("a gate that cannot pass in %s was not reported as failed", r.gateTimeout)
	}
	fmt.Printf("automatic fallback: crash %s, failed gate %s\n", r.crashBack.Round(100*time.Millisecond), r.gateBack.Round(100*time.Millisecond))
	return r, nil
}

// buildAgent links machined as another build: version ver, committed at
// committed (a second build to upgrade to).
func buildAgent(out, ver string, committed time.Time) error {
	pkg := "github.com/ballast-os/ballast/pkg/version"
	build := exec.Command("go", "build", "-trimpath", "-o", out, "-ldflags",
		"-s -w -X "+pkg+".Version="+ver+" -X "+pkg+".CommitTime="+committed.UTC().Format(time.RFC3339), "./cmd/machined")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build machined %s: %w: %s", ver, err, b)
	}
	return nil
}

// benchBundle writes a container-mode bundle of agent and the build's image
// archives.
func benchBundle(dir, agent, ver string, committed time.Time) error {
	archives, _ := filepath.Glob(filepath.Join(filepath.Dir(*binDir), "images", "*.tar"))
	src := []bundle.Source{{Path: agent, Name: "machined", Kind: bundle.KindMachined}}
	for _, a := range archives {
		src = append(src, bundle.Source{Path: a, Kind: bundle.KindArchive})
	}
	_, err := bundle.Write(dir, bundle.Manifest{Version: ver, CommitTime: committed, KubernetesVersion: "v1.36.3", Arch: runtime.GOARCH}, src)
	return err
}

func renderUpgrade(r upgradeResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s Container-mode nodes (netns) of a Kubernetes cluster with one control plane and one worker; each figure runs from the `nodectl` command to its verdict: the node healthy on the new slot (its services Running, etcd member caught up, kubelet Ready with a heartbeat from the new boot), or back on the old slot with the reason reported. %d rounds.\n\n", stamp(), len(r.cpUpgrade))
	b.WriteString("| operation | p50 | max |\n| --- | --: | --: |\n")
	row := func(name string, ds []time.Duration) {
		s := slices.Clone(ds)
		slices.Sort(s)
		if len(s) == 0 {
			return
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, s[len(s)/2].Round(100*time.Millisecond), s[len(s)-1].Round(100*time.Millisecond))
	}
	row("upgrade, control plane", r.cpUpgrade)
	row("rollback, control plane", r.cpRollback)
	row("upgrade, worker", r.wUpgrade)
	row("rollback, worker", r.wRollback)
	fmt.Fprintf(&b, "| automatic fallback: the new agent exits at start | %s | |\n", r.crashBack.Round(100*time.Millisecond))
	fmt.Fprintf(&b, "| automatic fallback: health gate not passed in %s | %s | |\n", r.gateTimeout, r.gateBack.Round(100*time.Millisecond))
	if r.bundleBytes > 0 {
		fmt.Fprintf(&b, "\nBundle (`_out/bundle`, every part): %.1f MB. An upgrade that changes only the agent streams %.1f MB: the node copies the image archives it already holds with the same SHA-256.\n", float64(r.bundleBytes)/1e6, float64(r.sentBytes)/1e6)
	}
	b.WriteString("\nTalos, for comparison (its documentation, no figure published): upgrades use an A-B image scheme that keeps the previous kernel and OS image; if an upgrade fails to boot, Talos rolls back to the previous version; `talosctl rollback` updates the boot reference and reboots. The installer image comes from a registry. Ballast's fallback is also taken when the new system boots but does not pass the health gate.\n")
	return b.String()
}
