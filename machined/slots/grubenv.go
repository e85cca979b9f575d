package slots

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// EnvSize is the size of GRUB's environment block: GRUB rewrites the block
// in place (save_env), so it never changes size.
const EnvSize = 1024

const envHeader = "# GRUB Environment Block\n"

// ParseEnv reads a GRUB environment block (grub-editenv's format): a
// header line, name=value lines, '#' padding.
func ParseEnv(b []byte) (map[string]string, error) {
	if len(b) != EnvSize || !bytes.HasPrefix(b, []byte(envHeader)) {
		return nil, fmt.Errorf("%w: not a GRUB environment block (%d bytes)", ErrCorrupt, len(b))
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b[len(envHeader):]), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%w: GRUB environment line %q", ErrCorrupt, line)
		}
		env[k] = v
	}
	return env, nil
}

// FormatEnv writes env as a GRUB environment block, names sorted. Names and
// values must be plain (no '=', newline or backslash).
func FormatEnv(env map[string]string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(envHeader)
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := env[k]
		if k == "" || strings.ContainsAny(k, "=\n\\#") || strings.ContainsAny(v, "\n\\") {
			return nil, fmt.Errorf("GRUB environment: %q=%q cannot be stored", k, v)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	if b.Len() > EnvSize {
		return nil, fmt.Errorf("GRUB environment: %d bytes, more than the block's %d", b.Len(), EnvSize)
	}
	b.Write(bytes.Repeat([]byte{'#'}, EnvSize-b.Len()))
	return b.Bytes(), nil
}
