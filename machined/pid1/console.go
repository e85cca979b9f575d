package pid1

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
)

// logger writes init's messages to the kernel log (which shows them on the
// console with the kernel's timestamps) once /dev/kmsg is there, and to the
// console before that.
type logger struct {
	mu      sync.Mutex
	console io.Writer
	kmsg    *os.File
}

func openConsole() io.Writer {
	if f, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
		return f
	}
	return os.Stderr
}

func newLogger(console io.Writer) *logger { return &logger{console: console} }

// attachKmsg switches to the kernel log (after /dev is mounted).
func (l *logger) attachKmsg() {
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		l.Printf("no /dev/kmsg (%v): logging to the console only", err)
		return
	}
	l.mu.Lock()
	l.kmsg = f
	l.mu.Unlock()
}

// Printf logs one line as "init: ...".
func (l *logger) Printf(format string, args ...any) {
	_, _ = l.prefixed("init: ").Write([]byte(fmt.Sprintf(format, args...) + "\n"))
}

// out is the agent's stdout and stderr: every line goes to the kernel log
// as "machined: ...".
func (l *logger) out() io.Writer { return l.prefixed("machined: ") }

func (l *logger) prefixed(prefix string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
			if l.kmsg != nil {
				// <6> is "info": shown on the console at the default level.
				// The kernel log takes one record per write.
				_, _ = l.kmsg.Write(append([]byte("<6>"+prefix), line...))
				continue
			}
			_, _ = l.console.Write(append(append([]byte(prefix), line...), '\n'))
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
