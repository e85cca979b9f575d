package qemuvm

import (
	"testing"
	"time"
)

func TestKernelTime(t *testing.T) {
	console := "SeaBIOS\n[   17.361900] Run /init as init process\r\n[   20.854825] machined: level=INFO msg=\"machine API listening\"\n"
	tests := []struct {
		what string
		want time.Duration
		ok   bool
	}{
		{"Run /init", 17361900 * time.Microsecond, true},
		{"machine API listening", 20854825 * time.Microsecond, true},
		{"SeaBIOS", 0, false},
		{"absent", 0, false},
	}
	for _, tt := range tests {
		got, ok := KernelTime(console, tt.what)
		if ok != tt.ok || (ok && (got-tt.want).Abs() > time.Microsecond) {
			t.Errorf("KernelTime(%q) = %s, %v; want %s, %v", tt.what, got, ok, tt.want, tt.ok)
		}
	}
}
