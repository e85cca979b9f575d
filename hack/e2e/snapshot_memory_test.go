package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// snapshotDBBytes is how much the test writes into etcd: more than 64 MiB,
// so that holding a snapshot in memory anywhere shows in the figures.
const snapshotDBBytes = 72 << 20

// TestSnapshotsStreamWithBoundedMemory writes more than 64 MiB into a real
// embedded etcd, then takes a scheduled snapshot, a `nodectl etcd snapshot`
// and a `bootstrap --recover-from` of it, and checks that neither machined
// nor nodectl grows by anything near the snapshot's size: snapshots stream
// to disk on both sides. It also checks that Recover refuses an upload
// larger than the receiving node's backend quota.
func TestSnapshotsStreamWithBoundedMemory(t *testing.T) {
	const addrA, addrB, addrC = "127.0.0.25", "127.0.0.26", "127.0.0.27"
	dir := genConfig(t, "memory", "https://"+addrA+":6443")
	nc := filepath.Join(dir, "nodeconfig")
	cp := filepath.Join(dir, "controlplane.yaml")
	ctl := func(args ...string) run { return mustNodectl(t, append([]string{"--nodeconfig", nc}, args...)...) }

	a := startMachined(t, t.TempDir(), addrA+":50000")
	mustNodectl(t, "apply-config", "--insecure", "-n", addrA, "--file", cp,
		"--config-patch", `{"machine":{"network":{"hostname":"memory-a"}}}`)
	ctl("-n", addrA, "bootstrap")
	waitFor(t, "etcd on node A", 60*time.Second, func() error {
		if r := nodectl(t, "--nodeconfig", nc, "-n", addrA, "etcd", "status"); r.code != 0 {
			return errors.New(r.String())
		}
		return nil
	})
	fillEtcd(t, ctl, addrA)

	// 1. A scheduled snapshot, switched on live, while machined is watched.
	base := rssAnon(t, a.cmd.Process.Pid)
	sampler := sampleRSS(a.cmd.Process.Pid)
	ctl("-n", addrA, "apply-config", "--mode", "no-reboot", "--file", cp, "--config-patch",
		`{"machine":{"network":{"hostname":"memory-a"}},"cluster":{"etcd":{"snapshots":{"interval":"1m","keep":1}}}}`)
	waitFor(t, "a scheduled snapshot on node A", 90*time.Second, func() error {
		if !strings.Contains(a.log.String(), `msg="etcd snapshot written"`) {
			return errors.New("none yet")
		}
		return nil
	})
	peak := sampler()
	snaps, _ := filepath.Glob(filepath.Join(a.stateDir, "var", "lib", "etcd-snapshots", "etcd-*.db"))
	if len(snaps) != 1 {
		t.Fatalf("scheduled snapshots on disk: %v", snaps)
	}
	st, err := os.Stat(snaps[0])
	if err != nil || st.Size() < snapshotDBBytes {
		t.Fatalf("scheduled snapshot %s is %v bytes (%v), want more than %d", snaps[0], st, err, snapshotDBBytes)
	}
	t.Logf("scheduled snapshot of %d MiB: machined anonymous memory %d MiB before, peak %d MiB (growth %d MiB)",
		st.Size()>>20, base>>20, peak>>20, (peak-base)>>20)
	// Holding the snapshot would add its whole size; allow half of it for
	// what else the process does meanwhile (etcd, GC timing).
	if peak-base > st.Size()/2 {
		t.Errorf("machined grew by %d MiB during a %d MiB scheduled snapshot: it is held in memory", (peak-base)>>20, st.Size()>>20)
	}

	// 2. nodectl etcd snapshot: the client streams to disk too.
	file := filepath.Join(t.TempDir(), "etcd.snapshot")
	idle := maxRSS(t, nc, "-n", addrA, "version")
	base = rssAnon(t, a.cmd.Process.Pid)
	sampler = sampleRSS(a.cmd.Process.Pid)
	got := maxRSS(t, nc, "-n", addrA, "etcd", "snapshot", file)
	peak = sampler()
	st, err = os.Stat(file)
	if err != nil || st.Size() < snapshotDBBytes {
		t.Fatalf("snapshot file: %v %v", st, err)
	}
	t.Logf("nodectl etcd snapshot of %d MiB: nodectl max RSS %d MiB (a version call: %d MiB); machined growth %d MiB",
		st.Size()>>20, got>>20, idle>>20, (peak-base)>>20)
	if got-idle > st.Size()/2 {
		t.Errorf("nodectl used %d MiB more for a %d MiB snapshot than for a version call", (got-idle)>>20, st.Size()>>20)
	}
	if peak-base > st.Size()/2 {
		t.Errorf("machined grew by %d MiB while streaming a snapshot", (peak-base)>>20)
	}

	// 3. Recover refuses an upload beyond the node's quota.
	startMachined(t, t.TempDir(), addrB+":50000")
	mustNodectl(t, "apply-config", "--insecure", "-n", addrB, "--file", cp, "--config-patch",
		`{"machine":{"network":{"hostname":"memory-b"}},"cluster":{"controlPlane":{"endpoint":"https://`+addrB+`:6443"},"etcd":{"quotaBackendBytes":33554432}}}`)
	r := nodectl(t, "--nodeconfig", nc, "-n", addrB, "bootstrap", "--recover-from", file)
	if r.code == 0 || !strings.Contains(r.stderr, "exceeds") || !strings.Contains(r.stderr, "quota") {
		t.Fatalf("an upload beyond the quota was not refused:\n%s", r)
	}

	// 4. Recover streams: neither side holds the snapshot.
	c := startMachined(t, t.TempDir(), addrC+":50000")
	mustNodectl(t, "apply-config", "--insecure", "-n", addrC, "--file", cp, "--config-patch",
		`{"machine":{"network":{"hostname":"memory-c"}},"cluster":{"controlPlane":{"endpoint":"https://`+addrC+`:6443"}}}`)
	base = rssAnon(t, c.cmd.Process.Pid)
	sampler = sampleRSS(c.cmd.Process.Pid)
	got = maxRSS(t, nc, "-n", addrC, "bootstrap", "--recover-from", file)
	peak = sampler()
	t.Logf("recover of %d MiB: nodectl max RSS %d MiB; receiving machined growth %d MiB", st.Size()>>20, got>>20, (peak-base)>>20)
	if got-idle > st.Size()/2 {
		t.Errorf("nodectl used %d MiB more to upload a %d MiB snapshot than for a version call", (got-idle)>>20, st.Size()>>20)
	}
	// The restored member maps its database; anonymous memory must still
	// not grow by the snapshot's size.
	if peak-base > st.Size()/2 {
		t.Errorf("the receiving machined grew by %d MiB during recovery", (peak-base)>>20)
	}
}

// fillEtcd writes snapshotDBBytes of incompressible values into node's etcd.
func fillEtcd(t *testing.T, ctl func(...string) run, node string) {
	t.Helper()
	pkiDir := t.TempDir()
	ctl("-n", node, "etcd", "client-cert", "--output-dir", pkiDir)
	cli := newEtcdClient(t, pkiDir, []string{node})
	defer cli.Close()
	val := make([]byte, 1<<20)
	for i := range snapshotDBBytes >> 20 {
		_, _ = rand.Read(val)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := cli.Put(ctx, fmt.Sprintf("/memory/%03d", i), string(val))
		cancel()
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
}

// rssAnon reads a process's anonymous resident memory (heap and stacks;
// file-backed pages such as etcd's mmapped database are not counted).
func rssAnon(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := readRSSAnon(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readRSSAnon(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "RssAnon:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no RssAnon in /proc/pid/status")
}

// sampleRSS samples pid's anonymous memory every 10 ms until the returned
// function is called, which returns the peak.
func sampleRSS(pid int) func() int64 {
	var mu sync.Mutex
	var peak int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if n, err := readRSSAnon(pid); err == nil {
				mu.Lock()
				peak = max(peak, n)
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// maxRSS runs nodectl and returns its peak resident memory.
func maxRSS(t *testing.T, nodeconfig string, args ...string) int64 {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "nodectl"), append([]string{"--nodeconfig", nodeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("nodectl %v: %v\n%s", args, err, out.String())
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatal("no rusage")
	}
	return ru.Maxrss << 10 // kilobytes on Linux
}
