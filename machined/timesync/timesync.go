// Package timesync keeps the machine's clock right with NTP (through
// github.com/beevik/ntp): certificates, etcd leases and the VIP's fencing
// all read the clock, and a machine with a dead RTC boots in 1970 or in the
// future. At boot it steps the clock once, waiting at most a bounded time
// for a server to answer (the node's role services wait for that first
// attempt), then polls and slews small offsets, stepping large ones. In
// container mode it never touches the clock (it is the host's): it only
// measures and reports the offset.
package timesync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/beevik/ntp"
	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/machined/clock"
)

// Timing of the synchronizer.
const (
	// DefaultBootTimeout bounds the wait for a first answer at boot.
	DefaultBootTimeout = 15 * time.Second
	// pollInterval is how often a synchronized clock is checked.
	pollInterval = 64 * time.Second
	// retryInterval is how often servers are asked again after none answered.
	retryInterval = 8 * time.Second
	// queryTimeout bounds one query.
	queryTimeout = 2 * time.Second
	// stepThreshold: a larger offset is stepped, a smaller one slewed.
	stepThreshold = 128 * time.Millisecond
)

// DefaultServers are asked on metal when neither the config nor DHCP names
// a server.
var DefaultServers = []string{"pool.ntp.org"}

// ErrNoServer is reported when no server answered.
var ErrNoServer = errors.New("no time server answered")

// errNoneConfigured: there is no server to ask (machine.time.disabled, or
// container mode without machine.time.servers).
var errNoneConfigured = errors.New("no time server configured")

// Options configure a Syncer.
type Options struct {
	Logger *slog.Logger
	// Servers returns the servers to ask now (config, else DHCP, else the
	// defaults on metal); re-read at every poll, so the list is live.
	Servers func() []string
	// SetClock steps and slews the system clock (metal); false only
	// measures.
	SetClock bool
	// BootTimeout returns the bound of the first synchronization, read
	// when Run starts (nil or 0: DefaultBootTimeout).
	BootTimeout func() time.Duration
	// Clock times the polls (the real clock by default).
	Clock clock.Clock
	// Query asks one server (ntp.QueryWithOptions by default).
	Query func(server string) (*ntp.Response, error)
	// Adjust changes the system clock by offset: a step when step is
	// true, else a slew (clock_settime / adjtimex by default).
	Adjust func(offset time.Duration, step bool) error
	// OnStep is called after the clock was stepped by offset.
	OnStep func(offset time.Duration)
}

// Status is what the synchronizer last saw.
type Status struct {
	// Synced: a server answered at the last poll.
	Synced bool
	Server string
	// Offset is the clock's offset from the server (positive: the local
	// clock is behind) at the last answer.
	Offset time.Duration
	RTT    time.Duration
	// LastSync is when a server last answered.
	LastSync time.Time
	// Stepped is the last step made (0: none).
	Stepped time.Duration
	// SetsClock is Options.SetClock.
	SetsClock bool
	// Error is the last failure ("" after an answer).
	Error string
	// Servers are the servers asked at the last poll.
	Servers []string
}

// Syncer keeps the clock synchronized.
type Syncer struct {
	opts      Options
	mu        sync.Mutex
	status    Status
	first     chan struct{}
	firstOnce sync.Once
}

// New returns a Syncer; nothing happens until Run.
func New(opts Options) *Syncer {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real()
	}
	if opts.Query == nil {
		opts.Query = func(server string) (*ntp.Response, error) {
			return ntp.QueryWithOptions(server, ntp.QueryOptions{Timeout: queryTimeout})
		}
	}
	if opts.Adjust == nil {
		opts.Adjust = adjustSystemClock
	}
	return &Syncer{opts: opts, first: make(chan struct{}), status: Status{SetsClock: opts.SetClock}}
}

// WaitFirst returns once the first synchronization succeeded or gave up
// (OptionsBootTimeout), or with ctx's error.
func (s *Syncer) WaitFirst(ctx context.Context) error {
	select {
	case <-s.first:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status returns what the synchronizer last saw.
func (s *Syncer) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Servers = append([]string(nil), st.Servers...)
	return st
}

// Run synchronizes until ctx ends: the first synchronization (retried
// until BootTimeout, then given up with a message: the machine goes on with
// the clock it has), then a poll every pollInterval (retryInterval while no
// server answers).
func (s *Syncer) Run(ctx context.Context, out io.Writer) error {
	defer s.firstOnce.Do(func() { close(s.first) })
	timeout := DefaultBootTimeout
	if s.opts.BootTimeout != nil && s.opts.BootTimeout() > 0 {
		timeout = s.opts.BootTimeout()
	}
	deadline := s.opts.Clock.Now().Add(timeout)
	for {
		err := s.poll(out)
		select {
		case <-s.first:
		default:
			switch {
			case errors.Is(err, errNoneConfigured):
				fmt.Fprintln(out, "no time server configured: the clock is left as it is")
				s.firstOnce.Do(func() { close(s.first) })
			case err == nil || !s.opts.Clock.Now().Before(deadline):
				if err != nil {
					s.opts.Logger.Warn("no time server answered at boot: going on with the clock as it is", "error", err, "waited", timeout)
					fmt.Fprintf(out, "no time server answered within %s (%v): going on with the clock as it is (%s)\n", timeout, err, s.opts.Clock.Now().UTC().Format(time.RFC3339))
				}
				s.firstOnce.Do(func() { close(s.first) })
			}
		}
		wait := pollInterval
		if err != nil {
			wait = retryInterval
			select {
			case <-s.first:
			default:
				wait = time.Second // still at boot: ask again soon
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.opts.Clock.After(wait):
		}
	}
}

// poll asks the servers in order until one answers, then corrects the clock
// (SetClock) and records the result.
func (s *Syncer) poll(out io.Writer) error {
	servers := s.opts.Servers()
	s.mu.Lock()
	s.status.Servers = servers
	s.mu.Unlock()
	if len(servers) == 0 {
		s.fail(errNoneConfigured)
		return errNoneConfigured
	}
	var errs []error
	for _, server := range servers {
		resp, err := s.opts.Query(server)
		if err == nil {
			err = resp.Validate()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", server, err))
			continue
		}
		return s.correct(server, resp, out)
	}
	err := fmt.Errorf("%w: %w", ErrNoServer, errors.Join(errs...))
	s.fail(err)
	return err
}

// correct applies one answer.
func (s *Syncer) correct(server string, resp *ntp.Response, out io.Writer) error {
	offset := resp.ClockOffset
	var stepped time.Duration
	if s.opts.SetClock {
		step := offset > stepThreshold || offset < -stepThreshold
		if err := s.opts.Adjust(offset, step); err != nil {
			err = fmt.Errorf("adjust the clock by %s: %w", offset, err)
			s.fail(err)
			return err
		}
		if step {
			stepped = offset
			s.opts.Logger.Warn("clock stepped", "offset", offset.String(), "server", server)
			fmt.Fprintf(out, "clock stepped by %s (server %s)\n", offset, server)
			if s.opts.OnStep != nil {
				s.opts.OnStep(offset)
			}
		}
	}
	s.mu.Lock()
	wasSynced := s.status.Synced
	s.status.Synced, s.status.Server, s.status.Offset, s.status.RTT, s.status.Error = true, server, offset, resp.RTT, ""
	s.status.LastSync = s.opts.Clock.Now()
	if stepped != 0 {
		s.status.Stepped = stepped
	}
	s.mu.Unlock()
	if !wasSynced {
		s.opts.Logger.Info("time synchronized", "server", server, "offset", offset.String(), "sets_clock", s.opts.SetClock)
		fmt.Fprintf(out, "synchronized with %s: offset %s, round trip %s\n", server, offset, resp.RTT)
	}
	return nil
}

func (s *Syncer) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Synced, s.status.Error = false, err.Error()
}

// adjustSystemClock steps CLOCK_REALTIME by offset, or slews it (adjtime's
// single-shot offset, at most ±0.5 s).
func adjustSystemClock(offset time.Duration, step bool) error {
	if step {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_REALTIME, &ts); err != nil {
			return err
		}
		ts = unix.NsecToTimespec(ts.Nano() + offset.Nanoseconds())
		return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
	}
	tx := unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT, Offset: offset.Microseconds()}
	_, err := unix.Adjtimex(&tx)
	return err
}
