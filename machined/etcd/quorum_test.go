package etcd

import (
	"errors"
	"testing"
)

func TestRemovalKeepsQuorum(t *testing.T) {
	tests := []struct {
		name                         string
		voters, healthy              int
		targetHealthy, targetLearner bool
		ok                           bool
	}{
		{"3 healthy, remove one", 3, 3, true, false, true},
		{"3 with one down, remove the down one", 3, 2, false, false, true},
		{"3 with one down, remove a healthy one", 3, 2, true, false, false},
		{"last member", 1, 1, true, false, false},
		{"2 healthy, remove one", 2, 2, true, false, true},
		{"5 with two down, remove a healthy one", 5, 3, true, false, false},
		{"5 with one down, remove a healthy one", 5, 4, true, false, true},
		{"learner is always removable", 3, 1, false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := removalKeepsQuorum(tt.voters, tt.healthy, tt.targetHealthy, tt.targetLearner)
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrQuorum) {
				t.Fatalf("got %v, want ErrQuorum", err)
			}
		})
	}
}

func TestPruneSnapshotsKeepsNewest(t *testing.T) {
	dir := t.TempDir()
	names := []string{"etcd-20260101T000000.000Z.db", "etcd-20260102T000000.000Z.db", "etcd-20260103T000000.000Z.db", "other.txt"}
	for _, n := range names {
		if err := writeFile(dir, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := pruneSnapshots(dir, 2); err != nil {
		t.Fatal(err)
	}
	left := listDir(t, dir)
	want := []string{"etcd-20260102T000000.000Z.db", "etcd-20260103T000000.000Z.db", "other.txt"}
	if len(left) != len(want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	for i := range want {
		if left[i] != want[i] {
			t.Fatalf("left %v, want %v", left, want)
		}
	}
}
