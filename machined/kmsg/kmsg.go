// Package kmsg reads the kernel log from /dev/kmsg and formats its records
// the way dmesg prints them ("[   12.345678] message").
package kmsg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Path is the kernel log device.
const Path = "/dev/kmsg"

// Format turns one /dev/kmsg record ("prio,seq,usec,flags;text\n" followed
// by " KEY=value" lines) into dmesg's form. Non-printable characters are
// escaped by the kernel already (\xNN).
func Format(record string) (string, error) {
	head, text, ok := strings.Cut(record, ";")
	if !ok {
		return "", fmt.Errorf("kernel log record without ';': %q", record)
	}
	fields := strings.Split(head, ",")
	if len(fields) < 3 {
		return "", fmt.Errorf("kernel log record header %q: want prio,seq,usec", head)
	}
	usec, err := strconv.ParseUint(fields[2], 10, 64)
	if err != nil {
		return "", fmt.Errorf("kernel log record timestamp %q: %w", fields[2], err)
	}
	text, _, _ = strings.Cut(text, "\n") // drop the dictionary lines
	return fmt.Sprintf("[%5d.%06d] %s", usec/1e6, usec%1e6, text), nil
}

// Read sends every kernel log record still in the buffer to send, then,
// with follow, the new ones until ctx ends.
func Read(ctx context.Context, path string, follow bool, send func(line string) error) error {
	flags := os.O_RDONLY
	if !follow {
		flags |= syscall.O_NONBLOCK
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return fmt.Errorf("open the kernel log: %w", err)
	}
	defer f.Close()
	if follow {
		// Closing the file ends a blocked read (char devices use Go's poller).
		stop := context.AfterFunc(ctx, func() { f.Close() })
		defer stop()
	}
	buf := make([]byte, 8192) // a record is at most ~1 KiB plus its dictionary
	for {
		n, err := f.Read(buf)
		switch {
		case errors.Is(err, syscall.EPIPE):
			continue // records were overwritten before we read them
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, io.EOF):
			return nil // no more records (non-follow)
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read the kernel log: %w", err)
		}
		line, err := Format(string(buf[:n]))
		if err != nil {
			continue
		}
		if err := send(line); err != nil {
			return err
		}
	}
}
