package logs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/logs"
)

// safety bounds waits that only time out when the code under test is broken.
const safety = 10 * time.Second

func newBuffer(t *testing.T, opts logs.Options) *logs.Buffer {
	t.Helper()
	b, err := logs.NewBuffer(opts)
	if err != nil {
		t.Fatalf("NewBuffer: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func write(t *testing.T, b *logs.Buffer, s string) {
	t.Helper()
	if n, err := b.Write([]byte(s)); err != nil || n != len(s) {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		name   string
		ring   int
		writes []string
		n      int
		want   []string
	}{
		{"empty", 10, nil, 5, []string{}},
		{"all", 10, []string{"a\nb\nc\n"}, 0, []string{"a", "b", "c"}},
		{"last two", 10, []string{"a\nb\nc\n"}, 2, []string{"b", "c"}},
		{"more than stored", 10, []string{"a\n"}, 5, []string{"a"}},
		{"ring wraps", 3, []string{"1\n2\n3\n4\n5\n"}, 0, []string{"3", "4", "5"}},
		{"ring wraps tail", 3, []string{"1\n2\n3\n4\n5\n"}, 2, []string{"4", "5"}},
		{"split writes", 10, []string{"hel", "lo\nwor", "ld\n"}, 0, []string{"hello", "world"}},
		{"partial line hidden", 10, []string{"a\nb"}, 0, []string{"a"}},
		{"crlf", 10, []string{"a\r\nb\r\n"}, 0, []string{"a", "b"}},
		{"empty lines", 10, []string{"\n\n"}, 0, []string{"", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBuffer(t, logs.Options{RingLines: tt.ring})
			for _, w := range tt.writes {
				write(t, b, w)
			}
			if got := b.Tail(tt.n); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Tail(%d) = %q, want %q", tt.n, got, tt.want)
			}
		})
	}
}

func TestLongLineIsSplit(t *testing.T) {
	b := newBuffer(t, logs.Options{})
	const size = 200 << 10
	write(t, b, strings.Repeat("x", size))
	lines := b.Tail(0)
	if len(lines) != 3 || len(lines[0]) != 64<<10 {
		t.Fatalf("got %d lines, want 3 chunks of 64 KiB", len(lines))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, l := range b.Tail(0) {
		total += len(l)
	}
	if total != size {
		t.Fatalf("after Close the ring holds %d bytes, want %d", total, size)
	}
}

func TestCloseFlushesPartialAndRejectsWrites(t *testing.T) {
	b := newBuffer(t, logs.Options{})
	write(t, b, "done\nno newline")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := b.Tail(0), []string{"done", "no newline"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Tail = %q, want %q", got, want)
	}
	if _, err := b.Write([]byte("x\n")); !errors.Is(err, logs.ErrClosed) {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			t.Fatal("follow channel closed early")
		}
		return s
	case <-time.After(safety):
		t.Fatal("no line received")
	}
	return ""
}

func waitClosed(t *testing.T, ch <-chan string) {
	t.Helper()
	timeout := time.After(safety)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("follow channel not closed")
		}
	}
}

func TestFollow(t *testing.T) {
	b := newBuffer(t, logs.Options{})
	write(t, b, "old1\nold2\nold3\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	ch := b.Follow(ctx, 2)
	for _, want := range []string{"old2", "old3"} {
		if got := recv(t, ch); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	write(t, b, "new1\nnew")
	if got := recv(t, ch); got != "new1" {
		t.Fatalf("got %q, want new1", got)
	}
	write(t, b, "2\n")
	if got := recv(t, ch); got != "new2" {
		t.Fatalf("got %q, want new2", got)
	}
	cancel()
	waitClosed(t, ch)
}

func TestFollowEndsOnClose(t *testing.T) {
	b := newBuffer(t, logs.Options{})
	ch := b.Follow(context.Background(), 0)
	write(t, b, "last\n")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, ch); got != "last" {
		t.Fatalf("got %q, want last", got)
	}
	waitClosed(t, ch)

	// Following a closed buffer yields its tail and ends.
	ch = b.Follow(context.Background(), 1)
	if got := recv(t, ch); got != "last" {
		t.Fatalf("got %q, want last", got)
	}
	waitClosed(t, ch)
}

func TestSlowFollowerDoesNotBlockWriters(t *testing.T) {
	b := newBuffer(t, logs.Options{RingLines: 10})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := b.Follow(ctx, 0)

	const total = 20000
	for i := range total {
		write(t, b, fmt.Sprintf("line %d\n", i)) // must not block although nobody reads
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	delivered, dropped, next := 0, 0, 0
	for s := range ch {
		var n int
		if _, err := fmt.Sscanf(s, "... %d lines dropped", &n); err == nil {
			dropped += n
			continue
		}
		if _, err := fmt.Sscanf(s, "line %d", &n); err != nil || n < next {
			t.Fatalf("unexpected or out-of-order line %q after line %d", s, next-1)
		}
		if delivered == 0 && n != 0 {
			t.Fatalf("first line %q, want line 0", s)
		}
		next = n + 1
		delivered++
	}
	if dropped == 0 {
		t.Fatal("no dropped-lines marker")
	}
	if delivered+dropped != total {
		t.Fatalf("delivered %d + dropped %d != %d", delivered, dropped, total)
	}
}

func TestFileAndRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	file := filepath.Join(dir, "svc.log")
	b := newBuffer(t, logs.Options{File: file, MaxFileBytes: 100})

	line := strings.Repeat("a", 29) // 30 bytes with newline
	for range 3 {
		write(t, b, line+"\n")
	}
	if _, err := os.Stat(file + ".1"); !os.IsNotExist(err) {
		t.Fatalf("rotated too early: %v", err)
	}
	write(t, b, "b\n") // 90 + 2 bytes fits
	write(t, b, line+"\n")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	old, err := os.ReadFile(file + ".1")
	if err != nil {
		t.Fatalf("rotated file: %v", err)
	}
	if want := strings.Repeat(line+"\n", 3) + "b\n"; string(old) != want {
		t.Fatalf(".1 = %q, want %q", old, want)
	}
	cur, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(cur) != line+"\n" {
		t.Fatalf("current = %q", cur)
	}

	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {file, 0o600}, {file + ".1", 0o600}} {
		st, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != c.mode {
			t.Errorf("%s mode = %v, want %v", c.path, st.Mode(), c.mode)
		}
	}
}

func TestFileAppendsAcrossBuffers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "svc.log")
	if err := os.WriteFile(file, []byte("before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := newBuffer(t, logs.Options{File: file})
	write(t, b, "after\n")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "before\nafter\n" {
		t.Fatalf("file = %q", got)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", st.Mode().Perm())
	}
}

func TestNewBufferBadFile(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := logs.NewBuffer(logs.Options{File: filepath.Join(blocker, "x.log")}); err == nil {
		t.Fatal("NewBuffer under a regular file succeeded")
	}
}
