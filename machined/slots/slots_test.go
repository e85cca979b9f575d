package slots

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestBootOnce(t *testing.T) {
	now := time.Unix(1000, 0)
	tests := []struct {
		name string
		// steps run in order on a fresh record with an upgrade to B scheduled
		steps      func(s *State) []string // slots booted
		wantBoots  []string
		wantActive string
		wantResult string
	}{
		{
			name: "confirmed try becomes active",
			steps: func(s *State) []string {
				b1, _ := s.Boot(now)
				s.Good(now)
				b2, _ := s.Boot(now)
				return []string{b1, b2}
			},
			wantBoots: []string{B, B}, wantActive: B, wantResult: Succeeded,
		},
		{
			name: "a try whose boot ends unconfirmed is not booted again",
			steps: func(s *State) []string {
				b1, _ := s.Boot(now)
				b2, _ := s.Boot(now) // e.g. a power cut during the try
				b3, _ := s.Boot(now)
				return []string{b1, b2, b3}
			},
			wantBoots: []string{B, A, A}, wantActive: A, wantResult: Failed,
		},
		{
			name: "a failed gate falls back",
			steps: func(s *State) []string {
				b1, _ := s.Boot(now)
				s.Fail(now, "gate")
				b2, _ := s.Boot(now)
				return []string{b1, b2}
			},
			wantBoots: []string{B, A}, wantActive: A, wantResult: Failed,
		},
		{
			name: "Good without a try changes nothing",
			steps: func(s *State) []string {
				s.Next = ""
				s.Last = nil
				s.Good(now)
				b, _ := s.Boot(now)
				return []string{b}
			},
			wantBoots: []string{A}, wantActive: A,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &State{Active: A}
			s.Schedule(Attempt{Kind: KindUpgrade, From: A, To: B, Version: "v2"})
			got := tt.steps(s)
			if len(got) != len(tt.wantBoots) {
				t.Fatalf("boots %v, want %v", got, tt.wantBoots)
			}
			for i := range got {
				if got[i] != tt.wantBoots[i] {
					t.Fatalf("boots %v, want %v", got, tt.wantBoots)
				}
			}
			if s.Active != tt.wantActive {
				t.Errorf("active %q, want %q", s.Active, tt.wantActive)
			}
			if tt.wantResult != "" && (s.Last == nil || s.Last.Result != tt.wantResult) {
				t.Errorf("last attempt %+v, want result %q", s.Last, tt.wantResult)
			}
		})
	}
}

func TestBootReportsTry(t *testing.T) {
	s := &State{Active: A}
	if _, trying := s.Boot(time.Now()); trying {
		t.Fatal("a boot with nothing scheduled is a try")
	}
	s.Schedule(Attempt{To: B})
	if slot, trying := s.Boot(time.Now()); !trying || slot != B || s.Trying != B || s.Next != "" {
		t.Fatalf("Boot = %s, %v; record %+v", slot, trying, s)
	}
}

func TestLoadSave(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "boot", FileName)
	s, err := Load(path)
	if err != nil || s.Active != A {
		t.Fatalf("missing record: %+v, %v", s, err)
	}
	s.Schedule(Attempt{Kind: KindUpgrade, From: A, To: B, Version: "v2", HealthTimeout: time.Minute})
	s.Slots = map[string]Slot{B: {Version: "v2"}}
	if err := Save(path, s); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Next != B || got.Last.HealthTimeout != time.Minute || got.Slots[B].Version != "v2" {
		t.Fatalf("round trip: %+v", got)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	for _, bad := range []string{`{`, `{"active":"c"}`, `{"active":"a","next":"x"}`, `{}`} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Load(%s) = %v, want ErrCorrupt", bad, err)
		}
	}
}
