// Package desired holds a node's desired state, the active machine config,
// and is the one mechanism by which a config change reaches the code that
// uses it: controllers watch it and converge whenever it changes.
//
// A field that docs/config.md calls live must have a consumer that watches
// here (Watch or the channel Get returns); reading the config once at start
// does not make a field live.
package desired

import (
	"context"
	"sync"

	"github.com/ballast-os/ballast/pkg/config"
)

// Config is the desired machine config of one node. The zero value is not
// usable; use New.
type Config struct {
	mu      sync.Mutex
	cfg     *config.Config
	gen     uint64
	changed chan struct{}
}

// New returns an empty desired state (a node in maintenance mode).
func New() *Config {
	return &Config{changed: make(chan struct{})}
}

// Set makes cfg the desired config and wakes every watcher.
func (d *Config) Set(cfg *config.Config) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg = cfg
	d.gen++
	close(d.changed)
	d.changed = make(chan struct{})
}

// Get returns the desired config (nil before the first Set) and a channel
// closed at the next change.
func (d *Config) Get() (*config.Config, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg, d.changed
}

// Current returns the desired config (nil before the first Set).
func (d *Config) Current() *config.Config {
	c, _ := d.Get()
	return c
}

// Watch calls apply with the current config (once there is one) and again
// after every change, until ctx ends. apply runs in the caller's goroutine;
// changes made while it runs are coalesced into one more call with the
// newest config, so a slow consumer never falls behind.
func (d *Config) Watch(ctx context.Context, apply func(ctx context.Context, cfg *config.Config)) {
	var seen uint64
	for {
		d.mu.Lock()
		cfg, gen, changed := d.cfg, d.gen, d.changed
		d.mu.Unlock()
		if cfg != nil && gen != seen {
			seen = gen
			apply(ctx, cfg)
			continue // it may have changed meanwhile
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}
