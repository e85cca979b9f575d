package images

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// TestVersionsMatchToolsEnv holds the build's pins (hack/tools.env) and the
// ones machined runs equal.
func TestVersionsMatchToolsEnv(t *testing.T) {
	f, err := os.Open("../../hack/tools.env")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			env[k] = v
		}
	}
	for key, want := range map[string]string{
		"COREDNS_VERSION": CoreDNSVersion,
		"PAUSE_VERSION":   PauseVersion,
		"BUSYBOX_VERSION": BusyboxVersion,
	} {
		if env[key] != want {
			t.Errorf("hack/tools.env %s=%q, pkg/images has %q", key, env[key], want)
		}
	}
}

func TestArchiveImage(t *testing.T) {
	for file, want := range map[string]string{
		"kube-apiserver-v1.36.3.tar": "kube-apiserver",
		"coredns-v1.15.0.tar":        "coredns",
		"pause-3.10.tar":             "pause",
		"odd.tar":                    "odd",
	} {
		if got := ArchiveImage(file); got != want {
			t.Errorf("ArchiveImage(%q) = %q, want %q", file, got, want)
		}
	}
}
