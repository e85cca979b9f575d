package install

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

// The disk layout, the same as the cloud disk's (hack/build-os.sh): EFI
// 64 MiB, BIOS boot 1 MiB, BOOT-A and BOOT-B SlotSize each, STATE 100 MiB,
// EPHEMERAL the rest.
const (
	MiB       = 1 << 20
	SlotSize  = 768 * MiB
	stateSize = 100 * MiB
	efiStart  = 1 * MiB
	efiSize   = 64 * MiB
	biosStart = efiStart + efiSize
	biosSize  = 1 * MiB
	bootA     = biosStart + biosSize
	bootB     = bootA + SlotSize
	stateAt   = bootB + SlotSize
	ephAt     = stateAt + stateSize
	// MinEphemeral is the least EPHEMERAL (etcd, containerd, logs) the
	// installer accepts.
	MinEphemeral = 1 << 30
	// MinDiskSize is the smallest disk the installer writes: the fixed
	// partitions, a MinEphemeral EPHEMERAL and the backup GPT.
	MinDiskSize = ephAt + MinEphemeral + MiB
)

// Partition names (GPT), as machined's PID 1 finds them.
const (
	PartEFI       = "EFI"
	PartBIOS      = "BIOS"
	PartBootA     = "BOOT-A"
	PartBootB     = "BOOT-B"
	PartState     = "STATE"
	PartEphemeral = "EPHEMERAL"
)

// Part is one partition of the layout.
type Part struct {
	Name  string
	Type  gpt.Type
	Start uint64 // bytes
	Size  uint64 // bytes; 0: to the end of the disk
}

// Layout is the partition table, in order (partition i+1 is Layout[i]).
var Layout = []Part{
	{PartEFI, gpt.EFISystemPartition, efiStart, efiSize},
	{PartBIOS, gpt.BIOSBoot, biosStart, biosSize},
	{PartBootA, gpt.LinuxFilesystem, bootA, SlotSize},
	{PartBootB, gpt.LinuxFilesystem, bootB, SlotSize},
	{PartState, gpt.LinuxFilesystem, stateAt, stateSize},
	{PartEphemeral, gpt.LinuxFilesystem, ephAt, 0},
}

// PartitionDevice is the device of partition n (1-based) of disk:
// /dev/vda3, /dev/nvme0n1p3.
func PartitionDevice(disk string, n int) string {
	if last := disk[len(disk)-1]; last >= '0' && last <= '9' {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

const sector = 512

// writeTable writes the GPT of the layout (with a protective MBR, keeping
// the MBR's boot code) to f, a disk of size bytes.
func writeTable(f *os.File, size uint64) error {
	t := &gpt.Table{LogicalSectorSize: sector, PhysicalSectorSize: sector, ProtectiveMBR: true}
	// The last usable sector: before the backup entries (32 sectors) and
	// header (1), as the table computes it when written.
	last := size/sector - 34
	for i, p := range Layout {
		end := (p.Start+p.Size)/sector - 1
		if p.Size == 0 {
			// EPHEMERAL ends on a MiB boundary below the backup GPT.
			end = (last+1)/(MiB/sector)*(MiB/sector) - 1
		}
		t.Partitions = append(t.Partitions, &gpt.Partition{
			Index: i + 1, Start: p.Start / sector, End: end, Size: (end + 1 - p.Start/sector) * sector, Type: p.Type, Name: p.Name,
		})
	}
	if err := t.Write(f, int64(size)); err != nil {
		return fmt.Errorf("write the partition table: %w", err)
	}
	return nil
}

// writeBootCode makes the disk boot with a BIOS as grub-install would:
// GRUB's boot.img in the MBR's code area, told the first sector of
// core.img, and core.img in the BIOS boot partition, its first sector
// (diskboot) told where the rest is. The EFI system partition's FAT image
// (BOOTX64.EFI and GRUB's environment block) is written as it is.
func writeBootCode(f *os.File, bootImg, coreImg []byte, efi io.Reader) error {
	if len(bootImg) != sector {
		return fmt.Errorf("boot.img is %d bytes, want %d", len(bootImg), sector)
	}
	if len(coreImg) == 0 || len(coreImg) > biosSize {
		return fmt.Errorf("core.img is %d bytes, want 1 to %d", len(coreImg), biosSize)
	}
	coreLBA := uint64(biosStart / sector)
	core := append([]byte(nil), coreImg...)
	sectors := (len(core) + sector - 1) / sector
	binary.LittleEndian.PutUint64(core[500:], coreLBA+1)
	binary.LittleEndian.PutUint16(core[508:], uint16(sectors-1))
	if _, err := f.WriteAt(core, int64(biosStart)); err != nil {
		return fmt.Errorf("write core.img: %w", err)
	}
	mbr := make([]byte, 440)
	copy(mbr, bootImg[:440])
	binary.LittleEndian.PutUint64(mbr[0x5c:], coreLBA)
	mbr[0x66], mbr[0x67] = 0x90, 0x90 // no check for the boot drive number
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return fmt.Errorf("write the MBR boot code: %w", err)
	}
	n, err := io.Copy(io.NewOffsetWriter(f, efiStart), io.LimitReader(efi, efiSize+1))
	if err != nil {
		return fmt.Errorf("write the EFI system partition: %w", err)
	}
	if n != efiSize {
		return fmt.Errorf("EFI image is %d bytes, want %d", n, efiSize)
	}
	return nil
}

// GrubConfig is the grub.cfg of a slot: it boots the slot's kernel with
// cmdline and ballast.slot=slot, and its initrds in order (file names in
// the slot's directory).
func GrubConfig(slot, cmdline, kernel string, initrds ...string) string {
	paths := make([]string, len(initrds))
	for i, f := range initrds {
		paths[i] = "/slot/" + f
	}
	return fmt.Sprintf(`serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
menuentry "Ballast (slot %s)" {
	linux /slot/%s %s ballast.slot=%s
	initrd %s
}
`, strings.ToUpper(slot), kernel, strings.TrimSpace(cmdline), slot, strings.Join(paths, " "))
}

// InstalledCmdline is the kernel command line of the installed system,
// made from the install boot's: the boot loader's and the install medium's
// arguments are dropped.
func InstalledCmdline(current string) string {
	var keep []string
	for _, f := range strings.Fields(current) {
		k, _, _ := strings.Cut(f, "=")
		switch k {
		case "BOOT_IMAGE", "initrd", "ballast.slot", "ballast.config":
			continue
		}
		keep = append(keep, f)
	}
	return strings.Join(keep, " ")
}

// FindPartition returns the device of the partition with the GPT name name
// (as the kernel reports it in uevent's PARTNAME).
func FindPartition(name string) (string, error) {
	entries, err := os.ReadDir("/sys/class/block")
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		data, err := os.ReadFile("/sys/class/block/" + e.Name() + "/uevent")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if line == "PARTNAME="+name {
				return "/dev/" + e.Name(), nil
			}
		}
	}
	return "", fmt.Errorf("no partition named %s", name)
}
