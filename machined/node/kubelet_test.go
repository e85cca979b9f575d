package node

import (
	"testing"
)

func TestErrorLine(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		{[]string{"I1123 starting", `E1123 15:04:05.000000 1 run.go:72] "command failed" err="unknown flag: --x"`, "exiting"}, `E1123 15:04:05.000000 1 run.go:72] "command failed" err="unknown flag: --x"`},
		{[]string{"I1123 starting", "bye"}, "bye"},
		{nil, ""},
	} {
		if got := errorLine(tc.lines); got != tc.want {
			t.Errorf("errorLine(%q) = %q, want %q", tc.lines, got, tc.want)
		}
	}
}
