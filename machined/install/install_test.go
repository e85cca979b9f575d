package install

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ballast-os/ballast/pkg/config"
)

// fakeSys writes a /sys/block tree for Disks.
func fakeSys(t *testing.T, disks map[string]map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, files := range disks {
		for p, v := range files {
			full := filepath.Join(root, name, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func TestDisksSelectCheck(t *testing.T) {
	gib := func(n uint64) string { return strconv.FormatUint(n<<30/512, 10) }
	sys := fakeSys(t, map[string]map[string]string{
		"loop0":   {"size": gib(100)},
		"sr0":     {"size": gib(1)},
		"vda":     {"size": gib(2), "serial": "small", "queue/rotational": "1"},
		"vdb":     {"size": gib(20), "serial": "big-1", "queue/rotational": "1", "vdb1/partition": "1"},
		"nvme0n1": {"size": gib(500), "device/model": "Fast NVMe", "device/serial": "N123", "queue/rotational": "0"},
		"sda":     {"size": gib(2000), "device/model": "Spinner", "queue/rotational": "1", "ro": "0"},
	})
	disks, err := Disks(sys)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range disks {
		got = append(got, d.Name+":"+d.Type)
	}
	if strings.Join(got, " ") != "nvme0n1:nvme sda:hdd vda:hdd vdb:hdd" {
		t.Fatalf("disks %v (loop and sr must be skipped)", got)
	}

	for _, tt := range []struct {
		name string
		in   config.Install
		want string // disk path, or an error substring
	}{
		{"by path", config.Install{Disk: "/dev/vdb"}, "/dev/vdb"},
		{"path not a disk", config.Install{Disk: "/dev/vdz"}, "not a disk of this machine (disks: /dev/nvme0n1, /dev/sda, /dev/vda, /dev/vdb)"},
		{"type", config.Install{DiskSelector: &config.DiskSelector{Type: "hdd"}}, "/dev/sda"},
		{"size range", config.Install{DiskSelector: &config.DiskSelector{MinSize: "10GB", MaxSize: "100GiB"}}, "/dev/vdb"},
		{"model glob", config.Install{DiskSelector: &config.DiskSelector{Model: "Fast*"}}, "/dev/nvme0n1"},
		{"serial", config.Install{DiskSelector: &config.DiskSelector{Serial: "small"}}, "/dev/vda"},
		{"nothing matches", config.Install{DiskSelector: &config.DiskSelector{Type: "ssd"}}, "/dev/vda: type hdd is not ssd"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Select(disks, tt.in)
			if strings.HasPrefix(tt.want, "/dev/") && !strings.Contains(tt.want, " ") {
				if err != nil || d.Path != tt.want {
					t.Fatalf("Select = %s, %v; want %s", d.Path, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Select = %s, %v; want an error with %q", d.Path, err, tt.want)
			}
		})
	}

	byName := map[string]Disk{}
	for _, d := range disks {
		byName[d.Name] = d
	}
	for _, tt := range []struct {
		disk string
		wipe bool
		want string
	}{
		{"vda", true, "too small: /dev/vda has 2.0 GiB (2147483648 bytes); Ballast needs at least 2.7 GiB (2859466752 bytes)"},
		{"vdb", false, "holds partitions: /dev/vdb has 1 partition(s) (vdb1); set machine.install.wipe: true"},
		{"vdb", true, ""},
		{"sda", false, ""},
	} {
		err := Check(byName[tt.disk], tt.wipe)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Check(%s, wipe=%v) = %v, want %q", tt.disk, tt.wipe, err, tt.want)
		}
	}
}

// TestWriteTable checks the table against sgdisk, the reference reader.
func TestWriteTable(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 4 << 30
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	boot := make([]byte, 512)
	for i := range boot {
		boot[i] = 0xAB
	}
	if _, err := f.WriteAt(boot[:440], 0); err != nil {
		t.Fatal(err)
	}
	if err := writeTable(f, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sgdisk", "-v", "-p", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v: %s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "No problems found") {
		t.Errorf("sgdisk -v finds problems:\n%s", s)
	}
	for _, want := range []string{
		"1            2048          133119   64.0 MiB    EF00  EFI",
		"2          133120          135167   1024.0 KiB  EF02  BIOS",
		"3          135168         1708031   768.0 MiB   8300  BOOT-A",
		"4         1708032         3280895   768.0 MiB   8300  BOOT-B",
		"5         3280896         3485695   100.0 MiB   8300  STATE",
		"6         3485696         8386559   2.3 GiB     8300  EPHEMERAL",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("sgdisk -p lacks %q:\n%s", want, s)
		}
	}
	mbr := make([]byte, 440)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	for _, b := range mbr {
		if b != 0xAB {
			t.Fatal("the table overwrote the MBR's boot code")
		}
	}
}

func TestGrubConfigAndCmdline(t *testing.T) {
	cmd := InstalledCmdline("BOOT_IMAGE=/boot/vmlinuz console=ttyS0,115200 panic=10 ballast.platform=metal ballast.config=http://x/c.yaml ballast.slot=b")
	if cmd != "console=ttyS0,115200 panic=10 ballast.platform=metal" {
		t.Fatalf("cmdline %q", cmd)
	}
	cfg := GrubConfig("b", cmd, "vmlinuz", "initramfs.xz", "images.cpio")
	for _, want := range []string{"linux /slot/vmlinuz console=ttyS0,115200 panic=10 ballast.platform=metal ballast.slot=b", "initrd /slot/initramfs.xz /slot/images.cpio"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
		}
	}
	if cfg := GrubConfig("a", cmd, "vmlinuz", "initramfs.xz"); strings.Contains(cfg, "images.cpio") {
		t.Errorf("a slot without images boots them:\n%s", cfg)
	}
}

// TestGrowTable puts the layout on a 3 GiB disk image, makes it 1 GiB
// larger (a cloud disk on a larger volume) and grows EPHEMERAL: sgdisk finds
// the table valid with the partition 1 GiB longer; a second run changes
// nothing. (The kernel's side, BLKPG and resize2fs, runs in the qemu test of
// the cloud disk.)
func TestGrowTable(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 3 << 30
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := writeTable(f, size); err != nil {
		t.Fatal(err)
	}
	if p, err := growTable(f, size); err != nil || p != nil {
		t.Fatalf("growTable on a disk the table fills = %v, %v; want no change", p, err)
	}
	if err := f.Truncate(size + 1<<30); err != nil {
		t.Fatal(err)
	}
	p, err := growTable(f, size+1<<30)
	if err != nil || p == nil {
		t.Fatalf("growTable = %v, %v", p, err)
	}
	if p.Name != PartEphemeral || p.Index != 6 || p.Size != (size+1<<30)-ephAt-MiB {
		t.Fatalf("grown partition %+v", p)
	}
	v, err := exec.Command("sgdisk", "-v", "-p", img).CombinedOutput()
	if err != nil || !strings.Contains(string(v), "No problems found") || !strings.Contains(string(v), "3485696         8386559   2.3 GiB     8300  EPHEMERAL") {
		t.Fatalf("sgdisk after growing: %v: %s", err, v)
	}
	if p, err := growTable(f, size+1<<30); err != nil || p != nil {
		t.Fatalf("growTable twice = %v, %v; want no change", p, err)
	}
}
