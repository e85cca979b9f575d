// Package kmsg reads the kernel log from /dev/kmsg and formats its records
// the way dmesg prints them ("[   12.345678] message").
package kmsg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
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
// with follow, the new ones until ctx ends. It reads the raw descriptor
// (non-blocking, polled): Go's file reads would wait in the runtime poller
// instead of reporting the end of the buffer.
func Read(ctx context.Context, path string, follow bool, send func(line string) error) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the kernel log: %w", err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 8192) // a record is at most ~1 KiB plus its dictionary
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EPIPE):
			continue // records were overwritten before we read them
		case errors.Is(err, unix.EAGAIN) || (err == nil && n == 0):
			if !follow {
				return nil // the end of the buffer
			}
			if ctx.Err() != nil {
				return nil
			}
			// Wait for the next record, waking up to notice ctx's end.
			if _, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 250); err != nil && !errors.Is(err, unix.EINTR) {
				return fmt.Errorf("wait for the kernel log: %w", err)
			}
			if n == 0 && err == nil {
				time.Sleep(50 * time.Millisecond) // a pipe without a writer polls as ready
			}
			continue
		case err != nil:
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
