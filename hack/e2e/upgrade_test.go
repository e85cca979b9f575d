package e2e

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/pkg/bundle"
)

// slotsView is `nodectl get slots -o json` for one node.
type slotsView struct {
	Value struct {
		Slot   string `json:"slot"`
		Active string `json:"active"`
		Next   string `json:"next"`
		Trying bool   `json:"trying"`
		Slots  []struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"slots"`
		Last *struct {
			Kind, Version, Result, Reason string
		} `json:"last"`
	} `json:"result"`
}

func (c *localCluster) slots(node string) slotsView {
	c.t.Helper()
	r := c.must("-n", node, "get", "slots", "-o", "json")
	var v []slotsView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || len(v) != 1 {
		c.t.Fatalf("get slots -o json: %v\n%s", err, r.stdout)
	}
	return v[0]
}

// runningVersion is the version and slot `nodectl version` reports.
func (c *localCluster) runningVersion(node string) string {
	c.t.Helper()
	r := c.must("-n", node, "version")
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.Contains(l, "machined ") && !strings.Contains(l, "nodectl") {
			return strings.TrimSpace(l)
		}
	}
	c.t.Fatalf("no machined line in %s", r.stdout)
	return ""
}

// buildMachined links machined with another version and commit time: a
// second build to upgrade to.
func buildMachined(t *testing.T, out, ver string, committed time.Time) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	pkg := "github.com/ballast-os/ballast/pkg/version"
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "-ldflags",
		"-s -w -X "+pkg+".Version="+ver+" -X "+pkg+".CommitTime="+committed.UTC().Format(time.RFC3339)+" -X "+pkg+".GitCommit=e2e",
		"./cmd/machined")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build machined %s: %v\n%s", ver, err, out)
	}
}

// makeBundle writes a container-mode bundle: agent plus the build's image
// archives.
func makeBundle(t *testing.T, dir, agent string, m bundle.Manifest, extra ...string) {
	t.Helper()
	// The nodes' images: machined's default, ../images next to it.
	images := filepath.Join(filepath.Dir(binDir), "images")
	archives, _ := filepath.Glob(filepath.Join(images, "*.tar"))
	if len(archives) == 0 {
		t.Fatalf("no image archives in %s (make container-images)", images)
	}
	src := []bundle.Source{{Path: agent, Name: "machined", Kind: bundle.KindMachined}}
	for _, a := range append(archives, extra...) {
		src = append(src, bundle.Source{Path: a, Kind: bundle.KindArchive})
	}
	if m.Arch == "" {
		m.Arch = runtime.GOARCH
	}
	if _, err := bundle.Write(dir, m, src); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeContainerMode upgrades a control plane of a Kubernetes
// cluster to a second build through the machine API and rolls it back;
// a broken build falls back by itself; bad bundles are refused with both
// slots left as they were.
func TestUpgradeContainerMode(t *testing.T) {
	requireRoot(t)
	c := newLocalCluster(t, "e2eupg", "10.82.0.0/24")
	c.createKubernetes("--controlplanes", "1", "--workers", "1")
	show := c.show()
	var cp, w clusterNode
	for _, n := range show.Nodes {
		if n.Role == "controlplane" {
			cp = n
		} else {
			w = n
		}
	}
	kc := filepath.Join(c.root, "kubeconfig")
	c.must("kubeconfig", kc)
	k := kubectl{t: t, kubeconfig: kc}
	k.must("create", "configmap", "before-upgrade", "--from-literal=kept=yes")

	work := t.TempDir()
	nextAgent := filepath.Join(work, "next-machined")
	buildMachined(t, nextAgent, "v0.0.0-e2e-next", time.Now().Add(time.Hour))
	next := filepath.Join(work, "next")
	makeBundle(t, next, nextAgent, bundle.Manifest{Version: "v0.0.0-e2e-next", CommitTime: time.Now().Add(time.Hour), KubernetesVersion: "v1.36.3"})
	original := c.runningVersion(cp.Address)
	if !strings.Contains(original, "slot a") {
		t.Fatalf("a new node does not run slot a: %s", original)
	}

	t.Run("bad bundles are refused and change nothing", func(t *testing.T) {
		c := c.on(t)
		corrupt := filepath.Join(work, "corrupt")
		makeBundle(t, corrupt, nextAgent, bundle.Manifest{Version: "v0.0.0-e2e-next", CommitTime: time.Now().Add(time.Hour)})
		// Same size, one byte flipped: only the digest can tell.
		agent := filepath.Join(corrupt, "machined")
		data, err := os.ReadFile(agent)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0xff
		_ = os.Remove(agent) // a hard link to nextAgent: do not change that one
		if err := os.WriteFile(agent, data, 0o755); err != nil {
			t.Fatal(err)
		}
		arm := filepath.Join(work, "arm")
		makeBundle(t, arm, nextAgent, bundle.Manifest{Version: "v0.0.0-e2e-next", CommitTime: time.Now().Add(time.Hour), Arch: "arm64"})
		old := filepath.Join(work, "old")
		makeBundle(t, old, nextAgent, bundle.Manifest{Version: "v0.0.0-e2e-old", CommitTime: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)})
		for _, tc := range []struct{ bundle, want string }{
			{corrupt, "does not match its manifest"},
			{arm, "another architecture"},
			{old, "--force installs it anyway"},
			{filepath.Join(work, "missing"), "no such file"},
		} {
			r := c.nodectl("-n", cp.Address, "upgrade", "--bundle", tc.bundle)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("upgrade --bundle %s: want a refusal naming %q, got %s", filepath.Base(tc.bundle), tc.want, r)
			}
		}
		s := c.slots(cp.Address)
		if s.Value.Next != "" || s.Value.Active != "a" || s.Value.Last != nil {
			t.Fatalf("a refused bundle changed the slots: %+v", s.Value)
		}
		for _, sl := range s.Value.Slots {
			if sl.Name == "b" && sl.Version != "" {
				t.Fatalf("slot b was written: %+v", s.Value)
			}
		}
		if got := c.runningVersion(cp.Address); got != original {
			t.Fatalf("version changed: %s, was %s", got, original)
		}
	})

	t.Run("upgrade to another build, then roll back", func(t *testing.T) {
		c := c.on(t)
		start := time.Now()
		r := c.must("-n", cp.Address, "upgrade", "--bundle", next, "--health-timeout", "3m")
		took := time.Since(start)
		if !strings.Contains(r.stdout, "slot b is active") {
			t.Fatalf("upgrade did not report success: %s", r)
		}
		got := c.runningVersion(cp.Address)
		if !strings.Contains(got, "v0.0.0-e2e-next") || !strings.Contains(got, "slot b") {
			t.Fatalf("after the upgrade: %s", got)
		}
		if out := k.must("get", "configmap", "before-upgrade", "-o", "jsonpath={.data.kept}"); out != "yes" {
			t.Fatalf("data written before the upgrade: %q", out)
		}
		c.health()
		t.Logf("upgrade of a control plane (etcd, apiserver, kubelet Ready): %s from the command to healthy on slot b", took.Round(100*time.Millisecond))

		start = time.Now()
		r = c.must("-n", cp.Address, "rollback", "--health-timeout", "3m")
		took = time.Since(start)
		if !strings.Contains(r.stdout, "slot a is active") {
			t.Fatalf("rollback did not report success: %s", r)
		}
		if got := c.runningVersion(cp.Address); got != original {
			t.Fatalf("after the rollback: %s, want %s", got, original)
		}
		if out := k.must("get", "configmap", "before-upgrade", "-o", "jsonpath={.data.kept}"); out != "yes" {
			t.Fatalf("data after the rollback: %q", out)
		}
		c.health()
		t.Logf("rollback of a control plane: %s", took.Round(100*time.Millisecond))
	})

	t.Run("a broken build falls back by itself", func(t *testing.T) {
		c := c.on(t)
		broken := filepath.Join(work, "broken-machined")
		if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'broken build: exiting at start' >&2\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(work, "broken")
		makeBundle(t, dir, broken, bundle.Manifest{Version: "v0.0.0-e2e-broken", CommitTime: time.Now().Add(2 * time.Hour)})
		start := time.Now()
		r := c.nodectl("-n", w.Address, "upgrade", "--bundle", dir, "--health-timeout", "2m")
		took := time.Since(start)
		if r.code == 0 || !strings.Contains(r.stderr, "upgrade to v0.0.0-e2e-broken failed") || !strings.Contains(r.stderr, "exit status 3") {
			t.Fatalf("a broken build was not reported as failed with its reason: %s", r)
		}
		if got := c.runningVersion(w.Address); !strings.Contains(got, "slot a") || strings.Contains(got, "broken") {
			t.Fatalf("after the failed upgrade: %s", got)
		}
		s := c.slots(w.Address)
		if s.Value.Active != "a" || s.Value.Last == nil || s.Value.Last.Result != "failed" {
			t.Fatalf("slots after the failed upgrade: %+v", s.Value)
		}
		c.health()
		t.Logf("a broken build on a worker: reported failed and back on slot a %s after the command", took.Round(100*time.Millisecond))
	})

	t.Run("a gate not passed in time falls back", func(t *testing.T) {
		c := c.on(t)
		r := c.nodectl("-n", w.Address, "upgrade", "--bundle", next, "--health-timeout", "1s")
		if r.code == 0 || !strings.Contains(r.stderr, "health gate not passed within 1s") {
			t.Fatalf("a gate that cannot pass in 1s was not reported: %s", r)
		}
		if got := c.runningVersion(w.Address); !strings.Contains(got, "slot a") || strings.Contains(got, "e2e-next") {
			t.Fatalf("after the failed gate: %s", got)
		}
		c.health()
	})

	t.Run("a power cut while the slot is written leaves the old slot booting", func(t *testing.T) {
		c := c.on(t)
		// A large part no node holds, so the stream lasts long enough to
		// be cut.
		filler := filepath.Join(work, "filler.tar")
		f, err := os.Create(filler)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadFrom(&io.LimitedReader{R: rand.Reader, N: 512 << 20}); err != nil {
			t.Fatal(err)
		}
		f.Close()
		dir := filepath.Join(work, "big")
		makeBundle(t, dir, nextAgent, bundle.Manifest{Version: "v0.0.0-e2e-big", CommitTime: time.Now().Add(3 * time.Hour)}, filler)
		before := c.slots(w.Address)
		cmd := exec.Command(filepath.Join(binDir, "nodectl"), "-n", w.Address, "upgrade", "--bundle", dir)
		cmd.Env = append(os.Environ(), "NODECONFIG="+c.nodeconfig)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		partial := filepath.Join(w.StateDir, "boot", "b.new", "filler.tar")
		waitFor(t, "the slot being written", 60*time.Second, func() error {
			if st, err := os.Stat(partial); err != nil || st.Size() == 0 {
				return errors.New("not yet")
			}
			return nil
		})
		powerOff(t, w)
		st, _ := os.Stat(partial)
		t.Logf("power cut with %d MiB of the part written", st.Size()>>20)
		c.startNode(w.Netns, w.StateDir, w.Address)
		waitFor(t, "the worker's machine API after the power cut", 2*time.Minute, func() error {
			if r := c.nodectl("-n", w.Address, "version"); r.code != 0 {
				return errors.New(r.stderr)
			}
			return nil
		})
		c.health()
		if got := c.runningVersion(w.Address); !strings.Contains(got, "slot a") || strings.Contains(got, "e2e-big") {
			t.Fatalf("after the power cut: %s", got)
		}
		after := c.slots(w.Address)
		if after.Value.Next != "" || after.Value.Active != "a" || after.Value.Last == nil || before.Value.Last == nil ||
			after.Value.Last.Version != before.Value.Last.Version || after.Value.Last.Result != before.Value.Last.Result {
			t.Fatalf("the slots record changed: before %+v, after %+v", before.Value, after.Value)
		}
	})
}
