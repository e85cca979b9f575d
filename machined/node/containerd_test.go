package node

import (
	"testing"

	"github.com/ballast-os/ballast/pkg/config"
)

func TestArchiveNamespace(t *testing.T) {
	cp := &config.Config{Machine: config.Machine{Type: config.TypeControlPlane}}
	w := &config.Config{Machine: config.Machine{Type: config.TypeWorker}}
	for _, tc := range []struct {
		cfg  *config.Config
		file string
		want string
	}{
		{cp, "kube-apiserver-v1.36.3.tar", "system"},
		{cp, "pause-3.10.tar", "k8s.io"},
		{cp, "coredns-v1.15.0.tar", "k8s.io"},
		{w, "kube-apiserver-v1.36.3.tar", ""},
		{w, "kube-scheduler-v1.36.3.tar", ""},
		{w, "kube-proxy-v1.36.3.tar", "k8s.io"},
		{w, "busybox-1.35.0.tar", "k8s.io"},
		{w, "something-else-1.tar", "system"},
	} {
		if got := archiveNamespace(tc.cfg)(tc.file); got != tc.want {
			t.Errorf("%s on a %s: %q, want %q", tc.file, tc.cfg.Machine.Type, got, tc.want)
		}
	}
}
