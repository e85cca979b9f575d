// Package nodeconfig reads and writes the nodectl client file: named contexts,
// each with endpoints, default nodes, the OS CA and a client certificate.
//
//	context: demo
//	contexts:
//	  demo:
//	    endpoints: [192.168.1.10]
//	    nodes: [192.168.1.10]
//	    ca: <base64 PEM>
//	    crt: <base64 PEM>
//	    key: <base64 PEM>
package nodeconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/ballast-os/ballast/pkg/atomicfile"
)

// EnvVar names the environment variable that overrides the default path.
const EnvVar = "NODECONFIG"

// ErrNoContext is returned when the requested or current context does not exist.
var ErrNoContext = errors.New("no such context")

// Config is the whole client file.
type Config struct {
	Context  string              `yaml:"context"`
	Contexts map[string]*Context `yaml:"contexts"`
}

// Context is one cluster's client settings.
type Context struct {
	Endpoints []string `yaml:"endpoints"`
	Nodes     []string `yaml:"nodes,omitempty"`
	CA        string   `yaml:"ca"`
	Crt       string   `yaml:"crt"`
	Key       string   `yaml:"key"`
}

// DefaultPath is $NODECONFIG, or ~/.nodectl/config.
func DefaultPath() string {
	if p := os.Getenv(EnvVar); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".nodectl", "config")
}

// Load reads a client file. A missing file yields an empty config.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Config{Contexts: map[string]*Context{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read nodeconfig: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes a client file strictly. An empty file (e.g. one made by
// mktemp) is an empty config, as kubectl treats an empty kubeconfig.
func Parse(data []byte, name string) (*Config, error) {
	c := &Config{}
	if len(bytes.TrimSpace(data)) == 0 {
		c.Contexts = map[string]*Context{}
		return c, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("decode nodeconfig %s: %w", name, err)
	}
	if c.Contexts == nil {
		c.Contexts = map[string]*Context{}
	}
	return c, nil
}

// Save writes the client file atomically with mode 0600 (it holds a private key).
func (c *Config) Save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create nodeconfig directory: %w", err)
	}
	data, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode nodeconfig: %w", err)
	}
	return atomicfile.Write(path, data, 0o600)
}

// Current returns the named context, or the current one when name is empty.
func (c *Config) Current(name string) (string, *Context, error) {
	if name == "" {
		name = c.Context
	}
	if name == "" {
		return "", nil, fmt.Errorf("%w: the nodeconfig has no current context (generate one with 'nodectl gen config')", ErrNoContext)
	}
	ctx, ok := c.Contexts[name]
	if !ok {
		return "", nil, fmt.Errorf("%w %q (have: %v)", ErrNoContext, name, c.Names())
	}
	return name, ctx, nil
}

// Names lists the context names, sorted.
func (c *Config) Names() []string {
	names := make([]string, 0, len(c.Contexts))
	for n := range c.Contexts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Merge adds every context of other. A name already taken gets a numeric
// suffix (demo-1, demo-2 …) unless replace is set. The current context
// becomes other's current one. It returns the names given to the merged
// contexts, in other's order.
func (c *Config) Merge(other *Config, replace bool) map[string]string {
	if c.Contexts == nil {
		c.Contexts = map[string]*Context{}
	}
	renamed := map[string]string{}
	for _, name := range other.Names() {
		target := name
		if !replace {
			for i := 1; c.Contexts[target] != nil; i++ {
				target = name + "-" + strconv.Itoa(i)
			}
		}
		ctx := *other.Contexts[name]
		c.Contexts[target] = &ctx
		renamed[name] = target
	}
	if other.Context != "" {
		if n, ok := renamed[other.Context]; ok {
			c.Context = n
		}
	}
	return renamed
}
