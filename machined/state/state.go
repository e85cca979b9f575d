// Package state owns a node's writable areas: STATE (the machine config and
// the config staged for the next boot) and EPHEMERAL (service data and logs).
// In container mode both live under the --state-dir directory.
//
// Every write is atomic (temp file, fsync, rename, fsync dir): a crash at any
// moment leaves the previous config whole.
package state

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ballast-os/ballast/pkg/atomicfile"
)

// ErrNoConfig means the node has never been configured (maintenance mode).
var ErrNoConfig = errors.New("no machine config")

const (
	configFile = "config.yaml"
	stagedFile = "config.staged.yaml"
	nodeIDFile = "node-id"
)

// Store is the node's persistent state.
type Store struct {
	root string
}

// Open creates (if needed) and opens the state under root.
func Open(root string) (*Store, error) {
	s := &Store{root: root}
	for _, d := range []string{s.StateDir(), s.EphemeralDir(), s.LogDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create state directory: %w", err)
		}
	}
	return s, nil
}

// Root is the --state-dir directory.
func (s *Store) Root() string { return s.root }

// StateDir holds the config and node identity (STATE).
func (s *Store) StateDir() string { return filepath.Join(s.root, "state") }

// EphemeralDir holds service data (EPHEMERAL, /var on metal).
func (s *Store) EphemeralDir() string { return filepath.Join(s.root, "var") }

// LogDir holds the rotated service logs.
func (s *Store) LogDir() string { return filepath.Join(s.EphemeralDir(), "log") }

// ConfigPath is the active config's file.
func (s *Store) ConfigPath() string { return filepath.Join(s.StateDir(), configFile) }

// Config returns the persisted config, or ErrNoConfig.
func (s *Store) Config() ([]byte, error) { return s.read(configFile) }

// SaveConfig atomically replaces the active config.
func (s *Store) SaveConfig(data []byte) error {
	if err := atomicfile.Write(s.ConfigPath(), data, 0o600); err != nil {
		return fmt.Errorf("persist config: %w", err)
	}
	return nil
}

// Staged returns the config staged for the next boot, or ErrNoConfig.
func (s *Store) Staged() ([]byte, error) { return s.read(stagedFile) }

// SaveStaged atomically stages a config for the next boot.
func (s *Store) SaveStaged(data []byte) error {
	if err := atomicfile.Write(filepath.Join(s.StateDir(), stagedFile), data, 0o600); err != nil {
		return fmt.Errorf("persist staged config: %w", err)
	}
	return nil
}

// DropStaged removes a staged config, if any.
func (s *Store) DropStaged() error {
	err := os.Remove(filepath.Join(s.StateDir(), stagedFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove staged config: %w", err)
	}
	return atomicfile.SyncDir(s.StateDir())
}

// PromoteStaged makes a staged config the active one (at boot). The rename is
// atomic, so a crash leaves either the old or the staged config active.
func (s *Store) PromoteStaged() (bool, error) {
	staged := filepath.Join(s.StateDir(), stagedFile)
	if _, err := os.Stat(staged); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err := os.Rename(staged, s.ConfigPath()); err != nil {
		return false, fmt.Errorf("promote staged config: %w", err)
	}
	return true, atomicfile.SyncDir(s.StateDir())
}

// Wipe removes STATE and EPHEMERAL (reset) and recreates them empty.
func (s *Store) Wipe() error {
	for _, d := range []string{s.StateDir(), s.EphemeralDir()} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("wipe %s: %w", d, err)
		}
	}
	_, err := Open(s.root)
	return err
}

func (s *Store) read(name string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(s.StateDir(), name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoConfig
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return data, nil
}

// NodeID is the node's identity on STATE: 128 random bits in hex, made at
// the first call and kept (a reset wipes it). It names a node that no
// config and no DHCP server names.
func (s *Store) NodeID() (string, error) {
	path := filepath.Join(s.StateDir(), nodeIDFile)
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) == 32 {
		return string(bytes.TrimSpace(b)), nil
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", fmt.Errorf("node ID: %w", err)
	}
	h := hex.EncodeToString(id)
	if err := atomicfile.Write(path, []byte(h+"\n"), 0o444); err != nil {
		return "", fmt.Errorf("node ID: %w", err)
	}
	return h, nil
}
