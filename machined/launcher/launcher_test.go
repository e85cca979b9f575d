package launcher

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/slots"
)

// agent writes a fake agent: a script that appends "<name> <slot> <trying>"
// to log and exits with the next code from codes (one per line, consumed),
// or 0 when none is left.
func agent(t *testing.T, path, name, log, codes string) {
	t.Helper()
	script := `#!/bin/sh
echo "` + name + ` $` + EnvSlot + ` $` + EnvTrying + `" >> ` + log + `
code=$(head -n1 ` + codes + ` 2>/dev/null)
sed -i 1d ` + codes + ` 2>/dev/null
exit ${code:-0}
`
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

type fixture struct {
	root, log, codes string
	opts             Options
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	f := &fixture{root: filepath.Join(dir, "node"), log: filepath.Join(dir, "boots"), codes: filepath.Join(dir, "codes")}
	medium := filepath.Join(dir, "bin", "machined")
	agent(t, medium, "medium", f.log, f.codes)
	f.opts = Options{
		Root: f.root, Machined: medium, ImagesDir: filepath.Join(dir, "images"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: io.Discard, Stderr: io.Discard,
		FailureDelay: 10 * time.Millisecond,
	}
	return f
}

// slot writes slot's agent under the node's boot directory.
func (f *fixture) slot(t *testing.T, slot string) {
	agent(t, filepath.Join(slots.Dir(f.root), slot, "machined"), "slot-"+slot, f.log, f.codes)
}

func (f *fixture) record(t *testing.T) *slots.State {
	st, err := slots.Load(filepath.Join(slots.Dir(f.root), slots.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (f *fixture) schedule(t *testing.T, to string) {
	st := f.record(t)
	st.Schedule(slots.Attempt{Kind: slots.KindUpgrade, From: st.Active, To: to, Version: "v2"})
	if err := slots.Save(filepath.Join(slots.Dir(f.root), slots.FileName), st); err != nil {
		t.Fatal(err)
	}
}

// run runs the launcher with the agents' exit codes and returns the boots.
func (f *fixture) run(t *testing.T, codes ...string) []string {
	t.Helper()
	if err := os.WriteFile(f.codes, []byte(strings.Join(codes, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := Run(ctx, f.opts); err != nil {
		t.Fatalf("Run: %v", err)
	}
	data, _ := os.ReadFile(f.log)
	_ = os.Remove(f.log)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return lines
}

func TestLauncher(t *testing.T) {
	reboot, crash := "10", "3"
	tests := []struct {
		name       string
		slotB      bool
		schedule   string
		codes      []string
		wantBoots  []string
		wantActive string
		wantResult string
	}{
		{name: "medium boots and shuts down", codes: []string{"0"}, wantBoots: []string{"medium a"}, wantActive: slots.A},
		{name: "reboot boots again", codes: []string{reboot, "0"}, wantBoots: []string{"medium a", "medium a"}, wantActive: slots.A},
		{name: "a crash of the active slot boots it again", codes: []string{crash, "0"}, wantBoots: []string{"medium a", "medium a"}, wantActive: slots.A},
		{
			name: "a tried slot that crashes is not booted again", slotB: true, schedule: slots.B,
			codes:      []string{crash, "0"},
			wantBoots:  []string{"slot-b b 1", "medium a"},
			wantActive: slots.A, wantResult: slots.Failed,
		},
		{
			name: "a tried slot that reboots before its gate falls back", slotB: true, schedule: slots.B,
			codes:      []string{reboot, "0"},
			wantBoots:  []string{"slot-b b 1", "medium a"},
			wantActive: slots.A, wantResult: slots.Failed,
		},
		{
			name: "a tried slot without an agent falls back", schedule: slots.B,
			codes:      []string{"0"},
			wantBoots:  []string{"medium a"},
			wantActive: slots.A, wantResult: slots.Failed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.slotB {
				f.slot(t, slots.B)
			}
			if tt.schedule != "" {
				f.schedule(t, tt.schedule)
			}
			got := f.run(t, tt.codes...)
			if strings.Join(got, "|") != strings.Join(tt.wantBoots, "|") {
				t.Fatalf("boots %q, want %q", got, tt.wantBoots)
			}
			st := f.record(t)
			if st.Active != tt.wantActive || st.Trying != "" || st.Next != "" {
				t.Errorf("record %+v, want active %s and nothing pending", st, tt.wantActive)
			}
			if tt.wantResult != "" && (st.Last == nil || st.Last.Result != tt.wantResult || st.Last.Reason == "") {
				t.Errorf("last attempt %+v, want %s with a reason", st.Last, tt.wantResult)
			}
		})
	}
}

// TestLauncherConfirmedTry: a slot the agent confirmed (Good) stays the
// active one across reboots.
func TestLauncherConfirmedTry(t *testing.T) {
	f := newFixture(t)
	f.slot(t, slots.B)
	f.schedule(t, slots.B)
	// The fake agent cannot confirm: do it between the boots, as the
	// health gate does while the try runs.
	path := filepath.Join(slots.Dir(f.root), slots.FileName)
	st := f.record(t)
	st.Boot(time.Now())
	st.Good(time.Now())
	if err := slots.Save(path, st); err != nil {
		t.Fatal(err)
	}
	got := f.run(t, "10", "0")
	if strings.Join(got, "|") != "slot-b b|slot-b b" {
		t.Fatalf("boots %q", got)
	}
	if st := f.record(t); st.Active != slots.B || st.Last.Result != slots.Succeeded {
		t.Errorf("record %+v", st)
	}
}

// TestLauncherStopsAgent: a signal to the launcher reaches the agent, and
// the launcher returns once the agent is gone.
func TestLauncherStopsAgent(t *testing.T) {
	f := newFixture(t)
	started := filepath.Join(t.TempDir(), "started")
	script := "#!/bin/sh\ntrap 'echo stopped >> " + f.log + "; exit 0' TERM\ntouch " + started + "\nwhile :; do sleep 0.05; done\n"
	if err := os.WriteFile(f.opts.Machined, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, f.opts) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the launcher did not return after its agent stopped")
	}
	if data, _ := os.ReadFile(f.log); !strings.Contains(string(data), "stopped") {
		t.Errorf("the agent was not sent SIGTERM: %q", data)
	}
}
