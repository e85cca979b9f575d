package node

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/ballast-os/ballast/pkg/bundle"
)

func TestCmdlineSlot(t *testing.T) {
	for _, tt := range []struct{ cmdline, want string }{
		{"BOOT_IMAGE=/slot/vmlinuz console=ttyS0 ballast.slot=b", "b"},
		{"console=ttyS0 ballast.platform=metal", ""},
		{"ballast.slots=a", ""},
	} {
		if got := cmdlineSlot(tt.cmdline); got != tt.want {
			t.Errorf("cmdlineSlot(%q) = %q, want %q", tt.cmdline, got, tt.want)
		}
		if bootedFromDisk(tt.cmdline) != (tt.want != "") {
			t.Errorf("bootedFromDisk(%q) disagrees", tt.cmdline)
		}
	}
}

func TestBootFiles(t *testing.T) {
	part := func(name, kind string) bundle.Part { return bundle.Part{Name: name, Kind: kind} }
	for _, tt := range []struct {
		name    string
		parts   []bundle.Part
		kernel  string
		initrds string
		bad     bool
	}{
		{"kernel, initramfs, images", []bundle.Part{part("images.cpio", bundle.KindImages), part("vmlinuz", bundle.KindKernel), part("initramfs.xz", bundle.KindInitramfs)}, "vmlinuz", "initramfs.xz images.cpio", false},
		{"agent only", []bundle.Part{part("k", bundle.KindKernel), part("i", bundle.KindInitramfs)}, "k", "i", false},
		{"container-mode bundle", []bundle.Part{part("machined", bundle.KindMachined), part("a.tar", bundle.KindArchive)}, "", "", true},
		{"no kernel", []bundle.Part{part("i", bundle.KindInitramfs)}, "", "", true},
		{"no initramfs", []bundle.Part{part("k", bundle.KindKernel), part("images.cpio", bundle.KindImages)}, "", "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kernel, initrds, err := bootFiles(&bundle.Manifest{Parts: tt.parts})
			if tt.bad {
				if !errors.Is(err, bundle.ErrInvalid) {
					t.Fatalf("bootFiles = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil || kernel != tt.kernel || strings.Join(initrds, " ") != tt.initrds {
				t.Fatalf("bootFiles = %q, %q, %v", kernel, initrds, err)
			}
		})
	}
}

// TestRetryRecord: a transient failure of the A/B record is retried, and
// the retries end with the boot's context.
func TestRetryRecord(t *testing.T) {
	n := &Node{log: slog.New(slog.DiscardHandler)}
	calls := 0
	err := n.retryRecord(context.Background(), "read", func() error {
		if calls++; calls < 2 {
			return errors.New("EFI partition busy")
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("retryRecord = %v after %d calls, want success on the 2nd", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.retryRecord(ctx, "read", func() error { return errors.New("broken") }); !errors.Is(err, context.Canceled) {
		t.Fatalf("retryRecord with an ended context = %v", err)
	}
}
