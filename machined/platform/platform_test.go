package platform

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestFromCmdline(t *testing.T) {
	tests := []struct {
		cmdline string
		want    Source
		err     string
	}{
		{"console=ttyS0 ballast.platform=metal", Source{}, "no config source"},
		{"console=ttyS0", Source{}, "no config source"},
		{"ballast.config=http://10.0.2.2:8080/cp.yaml", Source{URL: "http://10.0.2.2:8080/cp.yaml"}, ""},
		{"ballast.platform=nocloud ballast.config=https://h/c.yaml", Source{URL: "https://h/c.yaml"}, ""},
		{"ballast.config=ftp://h/c.yaml", Source{}, "want an http or https URL"},
		{"ballast.config=", Source{}, "want an http or https URL"},
		{"ballast.platform=nocloud", Source{Label: "cidata"}, ""},
		{"ballast.platform=nocloud ds=nocloud;s=http://10.0.2.2/seed/", Source{URL: "http://10.0.2.2/seed/user-data"}, ""},
		{"ballast.platform=nocloud ds=nocloud;seedfrom=http://10.0.2.2/seed", Source{URL: "http://10.0.2.2/seed/user-data"}, ""},
		{"ballast.platform=aws", Source{}, "unknown platform"},
		{"ballast.platform=metal ballast.platform=nocloud", Source{Label: "cidata"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.cmdline, func(t *testing.T) {
			got, err := FromCmdline(tt.cmdline)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("FromCmdline = %+v, %v; want an error containing %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("FromCmdline = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		cmdline, key, want string
		found              bool
	}{
		{"console=ttyS0 ballast.kubernetes=false", ArgKubernetes, "false", true},
		{"ballast.kubernetes", ArgKubernetes, "", true},
		{"ballast.kubernetes=0 ballast.kubernetes=1", ArgKubernetes, "1", true},
		{"ballast.kubernetesx=0", ArgKubernetes, "", false},
		{"ds=nocloud;s=http://h/", "ds", "nocloud;s=http://h/", true},
		{"", ArgKubernetes, "", false},
	}
	for _, tt := range tests {
		got, found := ParseCmdline(tt.cmdline)[tt.key]
		if got != tt.want || found != tt.found {
			t.Errorf("ParseCmdline(%q)[%q] = %q, %v; want %q, %v", tt.cmdline, tt.key, got, found, tt.want, tt.found)
		}
	}
}

func TestReadURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte("version: v1alpha1\n"))
		case "/big":
			w.Write(bytes.Repeat([]byte("a"), maxConfig+1))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	data, err := Source{URL: srv.URL + "/ok"}.Read(context.Background())
	if err != nil || string(data) != "version: v1alpha1\n" {
		t.Fatalf("Read /ok = %q, %v", data, err)
	}
	if _, err := (Source{URL: srv.URL + "/missing"}).Read(context.Background()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("Read /missing: %v, want the 404 in the error", err)
	}
	if _, err := (Source{URL: srv.URL + "/big"}).Read(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Read /big: %v, want a size error", err)
	}
}

func TestLabel(t *testing.T) {
	iso := make([]byte, 0x8000+2048)
	copy(iso[0x8000:], append([]byte{1}, "CD001"...))
	copy(iso[0x8000+40:], "cidata                          ")
	fat32 := make([]byte, 512)
	copy(fat32[0x47:], "CIDATA     ")
	copy(fat32[0x52:], "FAT32   ")
	fat32[510], fat32[511] = 0x55, 0xAA
	fat16 := make([]byte, 512)
	copy(fat16[0x2B:], "cidata     ")
	copy(fat16[0x36:], "FAT16   ")
	fat16[510], fat16[511] = 0x55, 0xAA
	tests := []struct {
		name          string
		img           []byte
		label, fstype string
		err           bool
	}{
		{"iso9660", iso, "cidata", "iso9660", false},
		{"fat32", fat32, "CIDATA", "vfat", false},
		{"fat16", fat16, "cidata", "vfat", false},
		{"ext4-ish", make([]byte, 4096), "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			label, fstype, err := Label(bytes.NewReader(tt.img))
			if (err != nil) != tt.err || label != tt.label || fstype != tt.fstype {
				t.Fatalf("Label = %q, %q, %v; want %q, %q, error %v", label, fstype, err, tt.label, tt.fstype, tt.err)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if got := Backoff(i); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", i, got, w)
		}
	}
}
