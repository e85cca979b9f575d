package node

import (
	"testing"

	"github.com/ballast-os/ballast/pkg/config"
)

func TestWantArchive(t *testing.T) {
	cp := &config.Config{Machine: config.Machine{Type: config.TypeControlPlane}}
	w := &config.Config{Machine: config.Machine{Type: config.TypeWorker}}
	for _, tc := range []struct {
		cfg  *config.Config
		file string
		want bool
	}{
		{cp, "kube-apiserver-v1.36.3.tar", true},
		{cp, "pause-3.10.tar", true},
		{w, "kube-apiserver-v1.36.3.tar", false},
		{w, "kube-scheduler-v1.36.3.tar", false},
		{w, "kube-proxy-v1.36.3.tar", true},
	} {
		if got := wantArchive(tc.cfg)(tc.file); got != tc.want {
			t.Errorf("%s on a %s: %v, want %v", tc.file, tc.cfg.Machine.Type, got, tc.want)
		}
	}
}
