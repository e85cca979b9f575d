package config

import (
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	const base = "a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: 6\ng: 7\nh: 8\ni: 9\n"
	tests := []struct {
		name     string
		old, new string
		want     string
	}{
		{name: "equal", old: base, new: base, want: ""},
		{name: "both empty", old: "", new: "", want: ""},
		{
			name: "one change with 3 lines of context",
			old:  base,
			new:  strings.Replace(base, "e: 5", "e: 50", 1),
			want: "--- old.yaml\n+++ new.yaml\n@@ -2,7 +2,7 @@\n b: 2\n c: 3\n d: 4\n-e: 5\n+e: 50\n f: 6\n g: 7\n h: 8\n",
		},
		{
			name: "added line at the end",
			old:  "a: 1\n",
			new:  "a: 1\nb: 2\n",
			want: "--- old.yaml\n+++ new.yaml\n@@ -1 +1,2 @@\n a: 1\n+b: 2\n",
		},
		{
			name: "from empty",
			old:  "",
			new:  "a: 1\n",
			want: "--- old.yaml\n+++ new.yaml\n@@ -0,0 +1 @@\n+a: 1\n",
		},
		{
			name: "missing final newline",
			old:  "a: 1\n",
			new:  "a: 1",
			want: "--- old.yaml\n+++ new.yaml\n@@ -1 +1 @@\n-a: 1\n+a: 1\n\\ No newline at end of file\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff("old.yaml", []byte(tt.old), "new.yaml", []byte(tt.new))
			if got != tt.want {
				t.Errorf("Diff =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestDiffConfigs(t *testing.T) {
	a := mustDecode(t, controlPlaneYAML(t))
	b := a.DeepCopy()
	b.Machine.Network.Hostname = "cp2"
	ab, _ := a.Bytes()
	bb, _ := b.Bytes()
	d := Diff("running", ab, "new", bb)
	for _, s := range []string{"--- running\n", "+++ new\n", "-    hostname: cp1\n", "+    hostname: cp2\n"} {
		if !strings.Contains(d, s) {
			t.Errorf("diff does not contain %q:\n%s", s, d)
		}
	}
}
