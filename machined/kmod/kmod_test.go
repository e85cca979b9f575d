package kmod

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const aliases = `# Aliases extracted from modules themselves.
alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias fs-squashfs squashfs
`

const deps = `kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/ethernet/intel/e1000/e1000.ko:
`

func index(t *testing.T) *Index {
	t.Helper()
	dir := t.TempDir()
	for name, text := range map[string]string{"modules.alias": aliases, "modules.dep": deps} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ix, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestMatchAndOrder(t *testing.T) {
	ix := index(t)
	for _, tc := range []struct {
		modalias string
		want     []string
	}{
		{"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", []string{"virtio_pci"}},
		{"virtio:d00000001v00001AF4", []string{"virtio_net"}},
		{"pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", []string{"e1000"}},
		{"pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00", nil},
	} {
		if got := ix.Match(tc.modalias); !slices.Equal(got, tc.want) {
			t.Errorf("Match(%s) = %v, want %v", tc.modalias, got, tc.want)
		}
	}
	files, err := ix.Order([]string{"virtio_pci", "virtio-net"})
	if err != nil {
		t.Fatal(err)
	}
	pos := func(name string) int {
		return slices.IndexFunc(files, func(f string) bool { return strings.HasSuffix(f, "/"+name+".ko") })
	}
	for _, before := range [][2]string{{"virtio_ring", "virtio"}, {"virtio_ring", "virtio_pci"}, {"virtio", "virtio_pci"}, {"failover", "net_failover"}, {"net_failover", "virtio_net"}} {
		if pos(before[0]) < 0 || pos(before[0]) > pos(before[1]) {
			t.Errorf("%s must load before %s: %v", before[0], before[1], files)
		}
	}
	if n := len(files); n != 7 {
		t.Errorf("%d files, want 7 without repeats: %v", n, files)
	}
	if _, err := ix.Order([]string{"nonexistent"}); err == nil {
		t.Error("an unknown module is not an error")
	}
}

func TestDeviceAliases(t *testing.T) {
	dir := t.TempDir()
	for p, a := range map[string]string{"pci0000:00/0000:00:03.0/modalias": "pci:v00001AF4d00001000sv*\n", "pci0000:00/0000:00:03.0/virtio0/modalias": "virtio:d00000001v00001AF4\n", "platform/serial8250/modalias": ""} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(a), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := DeviceAliases(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"pci:v00001AF4d00001000sv*", "virtio:d00000001v00001AF4"}; !slices.Equal(got, want) {
		t.Fatalf("DeviceAliases = %v, want %v", got, want)
	}
}
