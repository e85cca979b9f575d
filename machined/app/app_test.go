package app

import (
	"context"
	"io"
	"strings"
	"testing"
)

func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "--mode is required"},
		{[]string{"--mode", "container"}, "--state-dir is required"},
		{[]string{"--mode", "metal", "--state-dir", "x"}, "started by its init"},
		{[]string{"--mode", "vm"}, "want container or metal"},
		{[]string{"--mode", "container", "--state-dir", "DIR", "--log-level", "loud"}, "--log-level"},
		{[]string{"--mode", "container", "--state-dir", "DIR", "--log-format", "xml"}, "--log-format"},
		{[]string{"--mode", "container", "--state-dir", "DIR", "--api-listen", "1.2.3.4:99999"}, "--api-listen"},
		{[]string{"--mode", "container", "extra"}, "unexpected arguments"},
		{[]string{"--bogus"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.ReplaceAll(a, "DIR", t.TempDir())
			}
			err := Run(context.Background(), args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run(%v) = %v, want an error containing %q", args, err, tt.want)
			}
		})
	}
}

func TestRunHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"--version"}} {
		var out strings.Builder
		if err := Run(context.Background(), args, &out); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if out.Len() == 0 {
			t.Fatalf("%v printed nothing", args)
		}
	}
}
