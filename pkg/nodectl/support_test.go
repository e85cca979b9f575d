package nodectl

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"
)

func TestTarGzLayout(t *testing.T) {
	data, err := tarGz([]bundleFile{
		{"10.5.0.3/logs/kubelet.log", []byte("b\n")},
		{"10.5.0.2/version.json", []byte("{}\n")},
		{"README.txt", []byte("readme\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var got []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		want := int64(0o600)
		if h.Typeflag == tar.TypeDir {
			want = 0o700
		}
		if h.Mode != want {
			t.Errorf("%s: mode %o, want %o", h.Name, h.Mode, want)
		}
		got = append(got, h.Name)
	}
	want := []string{"support/10.5.0.2/", "support/10.5.0.3/", "support/10.5.0.3/logs/",
		"support/10.5.0.2/version.json", "support/10.5.0.3/logs/kubelet.log", "support/README.txt"}
	if len(got) != len(want) {
		t.Fatalf("entries %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("entries %q, want %q", got, want)
		}
	}
}

func TestNodeDir(t *testing.T) {
	for in, want := range map[string]string{
		"10.5.0.2:50000":     "10.5.0.2",
		"10.5.0.2:50001":     "10.5.0.2_50001",
		"[fd00::2]:50000":    "[fd00__2]",
		"node.example:50000": "node.example",
		"../../etc/x:50000":  ".._.._etc_x",
	} {
		if got := nodeDir(in); got != want {
			t.Errorf("nodeDir(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSupportNeedsAnOutputFile(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Run([]string{"-n", "10.5.0.2", "support"}, &out, &errb); code == 0 || !bytes.Contains(errb.Bytes(), []byte("--output-file (-O) is required")) {
		t.Fatalf("support without -O: exit %d, stderr %q", code, errb.String())
	}
}
