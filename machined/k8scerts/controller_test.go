package k8scerts

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/ballast-os/ballast/machined/clock"
	"github.com/ballast-os/ballast/machined/supervisor"
	"github.com/ballast-os/ballast/pkg/images"
)

// fakeServices records what the controller does to the supervisor.
type fakeServices struct {
	state   map[string]supervisor.State
	failOn  string
	journal *[]string
}

func (f fakeServices) Get(id string) (supervisor.Status, error) {
	healthy := true
	return supervisor.Status{ID: id, State: f.state[id], Healthy: &healthy}, nil
}

func (f fakeServices) Restart(_ context.Context, id string) error {
	*f.journal = append(*f.journal, "restart "+id)
	if id == f.failOn {
		return errors.New("boom")
	}
	return nil
}

// TestRestartOrderAndPending: changed components restart one at a time,
// leader-elected ones first; the apiserver restarts holding the cluster
// lock after the VIP was handed off; a component that is not running is
// not restarted (it starts on the new files); a failed restart stays
// pending for the next pass, and one that succeeded does not.
func TestRestartOrderAndPending(t *testing.T) {
	all := map[string]supervisor.State{images.APIServer: supervisor.StateRunning, images.ControllerManager: supervisor.StateRunning, images.Scheduler: supervisor.StateWaiting}
	for _, tc := range []struct {
		name        string
		changed     []string
		before, now map[string]string
		failOn      string
		wantJournal []string
		wantPending []string
	}{
		{
			name:        "new certificates for every component",
			changed:     []string{images.APIServer, images.ControllerManager, images.Scheduler},
			wantJournal: []string{"restart " + images.ControllerManager, "lock", "hand off", "restart " + images.APIServer, "unlock"},
		},
		{
			name:        "a changed flag restarts that component only",
			before:      map[string]string{images.APIServer: "a", images.ControllerManager: "b"},
			now:         map[string]string{images.APIServer: "a", images.ControllerManager: "b2"},
			wantJournal: []string{"restart " + images.ControllerManager},
		},
		{
			name:        "the first pass has nothing to compare flags with",
			now:         map[string]string{images.APIServer: "a"},
			wantJournal: nil,
		},
		{
			name:        "a failed apiserver restart stays pending and frees the lock",
			changed:     []string{images.APIServer, images.ControllerManager},
			failOn:      images.APIServer,
			wantJournal: []string{"restart " + images.ControllerManager, "lock", "hand off", "restart " + images.APIServer, "unlock"},
			wantPending: []string{images.APIServer},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var journal []string
			c := &Controller{
				Services: fakeServices{state: all, failOn: tc.failOn, journal: &journal},
				Lock: func(context.Context) (func(), error) {
					journal = append(journal, "lock")
					return func() { journal = append(journal, "unlock") }, nil
				},
				HandOff: func(context.Context) { journal = append(journal, "hand off") },
				Clock:   clock.NewFake(time.Unix(0, 0)),
			}
			err := c.restart(context.Background(), c.markPending(tc.changed, tc.before, tc.now), io.Discard)
			if (err != nil) != (tc.failOn != "") {
				t.Fatalf("restart: %v", err)
			}
			if !slices.Equal(journal, tc.wantJournal) {
				t.Fatalf("did %q, want %q", journal, tc.wantJournal)
			}
			if got := c.markPending(nil, nil, nil); !slices.Equal(got, tc.wantPending) {
				t.Fatalf("pending after the pass: %v, want %v", got, tc.wantPending)
			}
		})
	}
}
