package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	const pkg = `"Package":"example.com/p"`
	tests := []struct {
		name     string
		in       string
		wantCode int
		want     []string
	}{
		{
			name: "passes and a skip are counted and the skip is named",
			in: `{"Action":"run",` + pkg + `,"Test":"TestA"}
{"Action":"pass",` + pkg + `,"Test":"TestA"}
{"Action":"output",` + pkg + `,"Test":"TestB","Output":"    b_test.go:9: needs root\n"}
{"Action":"skip",` + pkg + `,"Test":"TestB"}
{"Action":"pass",` + pkg + `,"Elapsed":1.5}`,
			wantCode: 0,
			want:     []string{"example.com/p", "1      0      1", "skipped: example.com/p TestB: b_test.go:9: needs root"},
		},
		{
			name: "a failed test fails the run and its output is shown",
			in: `{"Action":"output",` + pkg + `,"Test":"TestC","Output":"boom\n"}
{"Action":"fail",` + pkg + `,"Test":"TestC"}
{"Action":"fail",` + pkg + `}`,
			wantCode: 1,
			want:     []string{"failed test example.com/p TestC", "boom", "FAILED"},
		},
		{
			name:     "a build failure fails the run",
			in:       `{"Action":"output",` + pkg + `,"Output":"syntax error\n"}` + "\n" + `{"Action":"fail",` + pkg + `}`,
			wantCode: 1,
			want:     []string{"failed package example.com/p", "syntax error"},
		},
		{name: "nothing ran", in: "", wantCode: 1, want: []string{"no test ran"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if code := run(strings.NewReader(tt.in), &out, false, "t"); code != tt.wantCode {
				t.Errorf("exit code %d, want %d\n%s", code, tt.wantCode, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
