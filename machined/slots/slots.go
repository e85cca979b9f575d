// Package slots keeps the record of a node's two system slots, A and B:
// which one boots by default, which one is tried once at the next boot, and
// how the last upgrade or rollback ended.
//
// The record is the node's boot-once switch. An upgrade writes the inactive
// slot and only then sets Next; the boot that follows consumes Next (it
// becomes Trying, written before the new system starts), so a new system
// that does not come up is never booted twice: whatever ends that boot —
// a crash, a reboot, a failed health gate — the boot after it is the Active
// slot again. Only the new system itself, once its health gate has passed,
// makes its slot Active (Good).
//
// A container-mode node keeps the record and its slots under its state
// directory's boot/ (see Dir): the stand-in for BOOT-A/B and GRUB's
// environment block on a machine's disk, outside STATE and EPHEMERAL so a
// reset does not forget which build the node runs.
package slots

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ballast-os/ballast/pkg/atomicfile"
)

// The slots.
const (
	A = "a"
	B = "b"
)

// FileName is the record's name in its directory.
const FileName = "slots.json"

// Results of an attempt.
const (
	Pending   = "pending"
	Succeeded = "succeeded"
	Failed    = "failed"
)

// Kinds of attempt.
const (
	KindUpgrade  = "upgrade"
	KindRollback = "rollback"
)

// Attempt is an upgrade or rollback: a switch from one slot to the other.
type Attempt struct {
	Kind    string `json:"kind"`
	From    string `json:"from"`
	To      string `json:"to"`
	Version string `json:"version"`
	// HealthTimeout bounds how long the new system may take to pass its
	// health gate.
	HealthTimeout time.Duration `json:"healthTimeout"`
	Started       time.Time     `json:"started"`
	Finished      time.Time     `json:"finished,omitzero"`
	Result        string        `json:"result"`
	Reason        string        `json:"reason,omitempty"`
}

// Slot is what a slot holds.
type Slot struct {
	Version           string    `json:"version"`
	CommitTime        time.Time `json:"commitTime,omitzero"`
	KubernetesVersion string    `json:"kubernetesVersion,omitempty"`
	Written           time.Time `json:"written,omitzero"`
	// Medium is true for the build the node was started with (slot A
	// before it is written).
	Medium bool `json:"medium,omitempty"`
}

// State is the record.
type State struct {
	// Active is the slot every boot starts unless Next is set.
	Active string `json:"active"`
	// Next is the slot the next boot tries, once.
	Next string `json:"next,omitempty"`
	// Trying is the slot the current boot tries: not yet good.
	Trying string `json:"trying,omitempty"`
	// Last is the last upgrade or rollback.
	Last *Attempt `json:"last,omitempty"`
	// Slots describes the slots that were written (a slot absent here is
	// the boot medium's build, see Dir).
	Slots map[string]Slot `json:"slots,omitempty"`
}

// ErrCorrupt is returned for a record that cannot be read.
var ErrCorrupt = errors.New("slots record is corrupt")

// Other returns the slot that is not s.
func Other(s string) string {
	if s == A {
		return B
	}
	return A
}

// Valid reports whether s names a slot.
func Valid(s string) bool { return s == A || s == B }

// Dir is where a container-mode node keeps its slots: root/boot. Slot X's
// files are in Dir/X; slot A without a directory is the build the node was
// started with (its boot medium).
func Dir(root string) string { return filepath.Join(root, "boot") }

// Load reads the record at path. A missing record is a node that never
// switched: slot A active.
func Load(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Active: A}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// Validate checks that the record names only slots A and B, and an active
// one.
func (s *State) Validate() error {
	for field, v := range map[string]string{"active": s.Active, "next": s.Next, "trying": s.Trying} {
		if v != "" && !Valid(v) {
			return fmt.Errorf("%w: %s is %q", ErrCorrupt, field, v)
		}
	}
	if s.Active == "" {
		return fmt.Errorf("%w: no active slot", ErrCorrupt)
	}
	return nil
}

// Save writes the record to path atomically (temp, fsync, rename).
func Save(path string, s *State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}

// Boot decides the slot this boot starts and whether it is a try, and
// updates the record for it (the caller saves it before starting
// anything). A try left unconfirmed by the previous boot has failed.
func (s *State) Boot(now time.Time) (slot string, trying bool) {
	if s.Trying != "" {
		s.Fail(now, "the new system's boot ended before it passed the health gate")
	}
	if s.Next != "" {
		s.Trying, s.Next = s.Next, ""
		return s.Trying, true
	}
	return s.Active, false
}

// Fail ends the current try (or a pending attempt that never booted) as
// failed with reason; the next boot is the active slot.
func (s *State) Fail(now time.Time, reason string) {
	s.Trying = ""
	if s.Last != nil && s.Last.Result == Pending {
		s.Last.Result, s.Last.Reason, s.Last.Finished = Failed, reason, now
	}
}

// Good makes the tried slot active: the new system passed its gate.
func (s *State) Good(now time.Time) {
	if s.Trying == "" {
		return
	}
	s.Active, s.Trying = s.Trying, ""
	if s.Last != nil && s.Last.Result == Pending {
		s.Last.Result, s.Last.Reason, s.Last.Finished = Succeeded, "", now
	}
}

// Schedule sets slot to be tried once at the next boot, recording the
// attempt.
func (s *State) Schedule(a Attempt) {
	s.Next = a.To
	a.Result = Pending
	s.Last = &a
}
