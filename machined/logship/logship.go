// Package logship sends the node's log lines to the receivers named in
// machine.logging.destinations (docs/observability.md): one JSON object per
// line (time, node, service, level, msg) over TCP or UDP. Each destination
// has its own bounded queue and connection: a receiver that is slow or away
// never blocks a service (its queue keeps the newest QueueLines lines and
// counts what it drops), and a TCP connection is made again with backoff.
// The destinations follow the desired config live.
package logship

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/desired"
	"github.com/ballast-os/ballast/machined/logs"
	"github.com/ballast-os/ballast/pkg/config"
)

// Defaults of Options.
const (
	// DefaultQueueLines is how many lines a destination keeps while its
	// receiver is away (about 10 MB of typical lines).
	DefaultQueueLines = 50000
	// sourceScan is how often new services' logs are looked for.
	sourceScan = 2 * time.Second
)

// Source is one log to ship.
type Source struct {
	Name   string
	Buffer *logs.Buffer
}

// Options configure a Shipper.
type Options struct {
	Logger *slog.Logger
	// Node names this node in every record (read for each line: a
	// hostname change shows at once).
	Node func() string
	// Desired is the node's desired config (machine.logging).
	Desired *desired.Config
	// Sources returns the logs to ship now (services come and go).
	Sources func() []Source
	// Kernel, when set, sends the kernel's log lines until ctx ends (a
	// machine's own kernel; container-mode nodes share the host's and do
	// not ship it).
	Kernel func(ctx context.Context, send func(line string) error) error
	// QueueLines bounds each destination's queue (DefaultQueueLines).
	QueueLines int
	Clock      clock.Clock
	// Registerer receives the shipping metrics (nil: none).
	Registerer prometheus.Registerer
}

// Shipper ships the node's logs to its destinations.
type Shipper struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics

	mu    sync.Mutex
	dests map[string]*destination // by endpoint
}

// New returns a Shipper; Run ships.
func New(opts Options) *Shipper {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real()
	}
	if opts.QueueLines <= 0 {
		opts.QueueLines = DefaultQueueLines
	}
	if opts.Node == nil {
		opts.Node = func() string { return "" }
	}
	return &Shipper{opts: opts, log: opts.Logger, metrics: newMetrics(opts.Registerer), dests: map[string]*destination{}}
}

// Run follows the desired config's destinations and ships every source's
// new lines to them until ctx ends. While there is no destination nothing
// is read.
func (s *Shipper) Run(ctx context.Context, out io.Writer) error {
	var (
		following context.CancelFunc // the sources' followers, while shipping
		followCtx context.Context
		followed  map[*logs.Buffer]bool
		wg        sync.WaitGroup
	)
	stopFollowing := func() {
		if following != nil {
			following()
			wg.Wait()
			following, followed = nil, nil
		}
	}
	defer func() {
		stopFollowing()
		s.setDestinations(ctx, nil, out)
	}()
	for {
		cfg, changed := s.opts.Desired.Get()
		var want []config.LogDestination
		if cfg != nil {
			want = cfg.Machine.Logging.Destinations
		}
		s.setDestinations(ctx, want, out)
		switch {
		case len(want) == 0:
			stopFollowing()
		case following == nil:
			followCtx, following = context.WithCancel(ctx)
			followed = map[*logs.Buffer]bool{}
			if s.opts.Kernel != nil {
				wg.Add(1)
				go func(ctx context.Context) {
					defer wg.Done()
					_ = s.opts.Kernel(ctx, func(line string) error { s.ship("kernel", "", line); return nil })
				}(followCtx)
			}
		}
		if following != nil {
			for _, src := range s.opts.Sources() {
				if src.Buffer == nil || followed[src.Buffer] {
					continue
				}
				followed[src.Buffer] = true
				wg.Add(1)
				go func(ctx context.Context, src Source) {
					defer wg.Done()
					for line := range src.Buffer.Follow(ctx, 0) {
						s.ship(src.Name, "", line)
					}
				}(followCtx, src)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-s.opts.Clock.After(sourceScan):
		}
	}
}

// setDestinations starts senders for new endpoints and stops those no
// longer wanted.
func (s *Shipper) setDestinations(ctx context.Context, want []config.LogDestination, out io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[string]bool{}
	for _, d := range want {
		keep[d.Endpoint] = true
		if _, ok := s.dests[d.Endpoint]; ok {
			continue
		}
		dest, err := newDestination(d.Endpoint, s.opts.QueueLines, s.metrics, s.log)
		if err != nil {
			fmt.Fprintf(out, "log destination %s: %v\n", d.Endpoint, err)
			continue
		}
		s.dests[d.Endpoint] = dest
		go dest.run(ctx, s.opts.Clock)
		fmt.Fprintf(out, "shipping logs to %s\n", d.Endpoint)
	}
	for ep, dest := range s.dests {
		if !keep[ep] {
			dest.stop()
			delete(s.dests, ep)
			fmt.Fprintf(out, "stopped shipping logs to %s\n", ep)
		}
	}
}

// record is one shipped line.
type record struct {
	Time    string `json:"time"`
	Node    string `json:"node"`
	Service string `json:"service"`
	Level   string `json:"level"`
	Msg     string `json:"msg"`
}

// ship encodes one line and queues it on every destination, never waiting.
func (s *Shipper) ship(service, level, line string) {
	if level == "" {
		level = Level(line)
	}
	data, err := json.Marshal(record{Time: s.opts.Clock.Now().UTC().Format(time.RFC3339Nano), Node: s.opts.Node(),
		Service: service, Level: level, Msg: line})
	if err != nil {
		return
	}
	data = append(data, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.dests {
		d.enqueue(data)
	}
}

// Level guesses a line's level from the forms the node's programs write:
// slog's text (level=WARN) and JSON ("level":"warn"), klog's prefix
// (W1207 …) and logrus/zap words; info otherwise.
func Level(line string) string {
	l := strings.ToLower(line)
	for _, lv := range []string{"error", "warn", "info", "debug"} {
		if strings.Contains(l, "level="+lv) || strings.Contains(l, `"level":"`+lv) {
			return lv
		}
	}
	if len(line) > 5 && strings.ContainsRune("IWEF", rune(line[0])) && line[1] >= '0' && line[1] <= '9' {
		return map[byte]string{'I': "info", 'W': "warn", 'E': "error", 'F': "fatal"}[line[0]]
	}
	return "info"
}
