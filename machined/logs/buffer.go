package logs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Defaults for Options fields left zero.
const (
	DefaultRingLines    = 1000
	DefaultMaxFileBytes = 10 << 20 // 10 MiB
)

const (
	// maxLineBytes bounds a single line: longer output without a newline is
	// split so that a misbehaving writer cannot grow memory without limit.
	maxLineBytes = 64 << 10
	// followQueueLines is how many lines a follower may lag behind before
	// further lines are dropped (and reported with a marker line).
	followQueueLines = 4096
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("logs: buffer closed")

// Options configures a Buffer.
type Options struct {
	// RingLines is how many lines are kept in memory (default 1000).
	RingLines int
	// File, if set, is a file the lines are appended to. Its directory is
	// created (mode 0700) if missing; the file has mode 0600.
	File string
	// MaxFileBytes is the size beyond which File is rotated to File+".1"
	// (replacing any older one). Default 10 MiB.
	MaxFileBytes int64
}

// Buffer collects the output of one service. It is safe for concurrent use.
type Buffer struct {
	opts Options

	mu        sync.Mutex
	ring      []string // circular, len == opts.RingLines
	head      int      // index of the oldest line
	count     int      // lines in ring
	partial   []byte   // incomplete trailing line
	file      *os.File
	size      int64 // bytes in file
	scratch   []byte
	fileErr   error // first file error, reported by Close
	followers map[*follower]struct{}
	closed    bool
}

// NewBuffer creates a Buffer, opening (or creating) opts.File if set.
func NewBuffer(opts Options) (*Buffer, error) {
	if opts.RingLines <= 0 {
		opts.RingLines = DefaultRingLines
	}
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = DefaultMaxFileBytes
	}
	b := &Buffer{
		opts:      opts,
		ring:      make([]string, opts.RingLines),
		followers: make(map[*follower]struct{}),
	}
	if opts.File != "" {
		if err := os.MkdirAll(filepath.Dir(opts.File), 0o700); err != nil {
			return nil, fmt.Errorf("logs: create log directory: %w", err)
		}
		f, err := openLogFile(opts.File)
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("logs: stat %s: %w", opts.File, err)
		}
		b.file, b.size = f, st.Size()
	}
	return b, nil
}

func openLogFile(name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("logs: open %s: %w", name, err)
	}
	// The file may pre-date us with looser permissions, and umask may differ.
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("logs: chmod %s: %w", name, err)
	}
	return f, nil
}

// Write records p. Complete lines become visible to Tail and Follow at once;
// a trailing incomplete line is held until its newline arrives (or Close).
// Errors writing the log file do not fail Write (the in-memory ring still
// works); the first one is returned by Close.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, ErrClosed
	}
	n := len(p)
	for len(p) > 0 {
		seg := p
		if room := maxLineBytes - len(b.partial); len(seg) > room {
			seg = seg[:room]
		}
		if i := bytes.IndexByte(seg, '\n'); i >= 0 {
			b.partial = append(b.partial, seg[:i]...)
			p = p[i+1:]
			b.flushPartialLocked()
			continue
		}
		b.partial = append(b.partial, seg...)
		p = p[len(seg):]
		if len(b.partial) >= maxLineBytes {
			b.flushPartialLocked()
		}
	}
	return n, nil
}

func (b *Buffer) flushPartialLocked() {
	line := strings.TrimSuffix(string(b.partial), "\r")
	b.partial = b.partial[:0]
	b.addLineLocked(line)
}

func (b *Buffer) addLineLocked(line string) {
	tail := (b.head + b.count) % len(b.ring)
	b.ring[tail] = line
	if b.count < len(b.ring) {
		b.count++
	} else {
		b.head = (b.head + 1) % len(b.ring)
	}
	b.writeFileLocked(line)
	for f := range b.followers {
		f.pushLocked(line)
	}
}

func (b *Buffer) writeFileLocked(line string) {
	if b.file == nil {
		return
	}
	n := int64(len(line) + 1)
	if b.size > 0 && b.size+n > b.opts.MaxFileBytes {
		b.rotateLocked()
		if b.file == nil {
			return
		}
	}
	b.scratch = append(append(b.scratch[:0], line...), '\n')
	w, err := b.file.Write(b.scratch)
	b.size += int64(w)
	b.recordErrLocked(err)
}

// rotateLocked moves the current file to File.1 and starts a new one. If the
// new file cannot be opened, file logging stops (the ring keeps working).
func (b *Buffer) rotateLocked() {
	b.recordErrLocked(b.file.Close())
	b.file = nil
	name := b.opts.File
	if err := os.Rename(name, name+".1"); err != nil {
		b.recordErrLocked(fmt.Errorf("logs: rotate %s: %w", name, err))
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		b.recordErrLocked(fmt.Errorf("logs: reopen %s: %w", name, err))
		return
	}
	b.file, b.size = f, 0
}

func (b *Buffer) recordErrLocked(err error) {
	if err != nil && b.fileErr == nil {
		b.fileErr = err
	}
}

// Tail returns the last n complete lines, oldest first; n <= 0 returns every
// line in the ring.
func (b *Buffer) Tail(n int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tailLocked(n)
}

func (b *Buffer) tailLocked(n int) []string {
	if n <= 0 || n > b.count {
		n = b.count
	}
	out := make([]string, n)
	start := b.head + b.count - n
	for i := range out {
		out[i] = b.ring[(start+i)%len(b.ring)]
	}
	return out
}

// Close flushes an incomplete last line, ends all Follow channels (after they
// have delivered what was queued) and closes the file. Close is idempotent.
func (b *Buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	if len(b.partial) > 0 {
		b.flushPartialLocked()
	}
	b.closed = true
	for f := range b.followers {
		f.closeLocked()
	}
	if b.file != nil {
		b.recordErrLocked(b.file.Close())
		b.file = nil
	}
	return b.fileErr
}
