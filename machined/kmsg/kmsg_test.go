package kmsg

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		record, want, err string
	}{
		{"6,339,5140900,-;NET: Registered protocol family 10\n", "[    5.140900] NET: Registered protocol family 10", ""},
		{"4,1,17000001,-,caller=T1;init: ready\n SUBSYSTEM=x\n", "[   17.000001] init: ready", ""},
		{"6,1,123456789012,-;late\n", "[123456.789012] late", ""},
		{"garbage", "", "without ';'"},
		{"6,1;x", "", "want prio,seq,usec"},
		{"6,1,abc,-;x", "", "timestamp"},
	}
	for _, tt := range tests {
		got, err := Format(tt.record)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Format(%q) = %q, %v; want an error containing %q", tt.record, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Format(%q) = %q, %v; want %q", tt.record, got, err, tt.want)
		}
	}
}

// TestReadFollowStops reads a pipe standing in for /dev/kmsg (one record per
// write, as the device returns them): the records come through, and
// cancelling the context ends a follow that is blocked in read.
func TestReadFollowStops(t *testing.T) {
	dir := t.TempDir()
	fifo := dir + "/kmsg"
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 4)
	done := make(chan error, 1)
	go func() { done <- Read(ctx, fifo, true, func(l string) error { got <- l; return nil }) }()
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte("6,1,2000000,-;hello\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-got:
		if l != "[    2.000000] hello" {
			t.Fatalf("line = %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no line from the follow")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Read after cancel = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return after the context was cancelled")
	}
}

// TestReadHostLog reads this machine's own kernel log to its end: the
// non-follow read must return (it once waited forever in Go's poller).
func TestReadHostLog(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("BALLAST_SKIP_PRIVILEGED") == "1" {
			t.Skip("privileged test skipped because BALLAST_SKIP_PRIVILEGED=1: the kernel log needs root")
		}
		t.Fatal("privileged test run without root: reading the kernel log needs root (or BALLAST_SKIP_PRIVILEGED=1)")
	}
	if _, err := os.Stat(Path); err != nil {
		t.Fatalf("no %s on this machine: %v", Path, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := 0
	if err := Read(ctx, Path, false, func(string) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("Read did not return at the end of the kernel log")
	}
	if n == 0 {
		t.Fatal("no kernel log record read")
	}
}
