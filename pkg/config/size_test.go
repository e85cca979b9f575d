package config

import "testing"

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint64
		bad  bool
	}{
		{in: "4096", want: 4096},
		{in: "10GB", want: 10e9},
		{in: "10 gib", want: 10 << 30},
		{in: "1.5TiB", want: 3 << 39},
		{in: "512MiB", want: 512 << 20},
		{in: "2kB", want: 2000},
		{in: "7B", want: 7},
		{in: "ten", bad: true},
		{in: "-1GB", bad: true},
		{in: "", bad: true},
		{in: "GB", bad: true},
		{in: "1e30TB", bad: true},
	} {
		got, err := ParseSize(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseSize(%q) = %d, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	if got := FormatSize(3 << 30); got != "3.0 GiB" {
		t.Errorf("FormatSize = %q", got)
	}
}
