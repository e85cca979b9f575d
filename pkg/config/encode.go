package config

import (
	"bytes"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Bytes encodes c as YAML (2-space indentation). The output decodes back
// (with Decode) to a config equal to c.
func (c *Config) Bytes() ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("encode machine config: nil config")
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode machine config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode machine config: %w", err)
	}
	return buf.Bytes(), nil
}
