// Package platform finds a Ballast machine's config at boot from what the
// kernel command line names: `ballast.config=<http(s) URL>` (fetched), or
// `ballast.platform=nocloud` (user-data from a volume labelled cidata, or
// from the URL of a `ds=nocloud;s=<URL>` argument). A machine with neither
// waits in maintenance mode for `nodectl apply-config --insecure`.
package platform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Names of the kernel arguments.
const (
	ArgConfig   = "ballast.config"
	ArgPlatform = "ballast.platform"
	// ArgKubernetes=false runs the agent and etcd only (--kubernetes=false).
	ArgKubernetes = "ballast.kubernetes"
)

// Platforms.
const (
	Metal   = "metal"
	NoCloud = "nocloud"
)

// ErrNoSource means the command line names no config source.
var ErrNoSource = errors.New("no config source on the kernel command line")

// maxConfig bounds a fetched config (configs are a few KiB).
const maxConfig = 1 << 20

// Source is where the machine's config comes from.
type Source struct {
	// URL is fetched with GET (ballast.config, or nocloud's ds= seed URL
	// plus "user-data").
	URL string
	// Label is the volume label of a nocloud seed volume.
	Label string
}

func (s Source) String() string {
	if s.URL != "" {
		return s.URL
	}
	return "volume labelled " + s.Label
}

// FromCmdline returns the config source the kernel command line names.
func FromCmdline(cmdline string) (Source, error) {
	args := ParseCmdline(cmdline)
	if u, ok := args[ArgConfig]; ok {
		if err := checkURL(u); err != nil {
			return Source{}, fmt.Errorf("%s: %w", ArgConfig, err)
		}
		return Source{URL: u}, nil
	}
	switch p := args[ArgPlatform]; p {
	case "", Metal:
		return Source{}, ErrNoSource
	case NoCloud:
		// ds=nocloud;s=http://host/path/ (cloud-init's seed URL form).
		if ds, ok := args["ds"]; ok {
			for _, part := range strings.Split(ds, ";")[1:] {
				k, v, _ := strings.Cut(part, "=")
				if (k == "s" || k == "seedfrom") && v != "" {
					u := strings.TrimSuffix(v, "/") + "/user-data"
					if err := checkURL(u); err != nil {
						return Source{}, fmt.Errorf("ds: %w", err)
					}
					return Source{URL: u}, nil
				}
			}
		}
		return Source{Label: "cidata"}, nil
	default:
		return Source{}, fmt.Errorf("%s=%s: unknown platform (want metal or nocloud)", ArgPlatform, p)
	}
}

// ParseCmdline returns a kernel command line's arguments: key=value, a bare
// key with the value "" (the last one wins, as in the kernel).
func ParseCmdline(cmdline string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		out[k] = v
	}
	return out
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q: want an http or https URL", s)
	}
	return nil
}

// Read makes one attempt to read the config from the source.
func (s Source) Read(ctx context.Context) ([]byte, error) {
	if s.URL != "" {
		return fetch(ctx, s.URL)
	}
	return readNoCloudVolume(s.Label)
}

func fetch(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxConfig+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(data) > maxConfig {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", u, maxConfig)
	}
	return data, nil
}

// Backoff is the wait before attempt n (0-based): 1 s doubling to 30 s.
func Backoff(n int) time.Duration {
	d := time.Second
	for i := 0; i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}
