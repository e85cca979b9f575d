package runner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrBinaryNotFound is returned by FindBinary when no executable is found.
var ErrBinaryNotFound = errors.New("binary not found")

// FindBinary locates the program name: explicit when set (it must exist),
// else next to machined's own executable, else in PATH. hint ends the error
// (how to get the binary).
func FindBinary(name, explicit, hint string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("%s %w: %v", name, ErrBinaryNotFound, err)
		}
		return explicit, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s %w next to machined or in PATH (%s)", name, ErrBinaryNotFound, hint)
}
