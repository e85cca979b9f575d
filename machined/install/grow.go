package install

import (
	"fmt"
	"os"
	"unsafe"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"
)

// GrowLast moves the backup GPT of disk to the end of the disk and extends
// its last partition (EPHEMERAL) to the end of the usable space, telling the
// kernel the partition's new size. It reports whether anything changed; the
// filesystem on the partition is grown by its caller (resize2fs).
func GrowLast(disk string) (grown bool, newSize uint64, err error) {
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		return false, 0, err
	}
	defer f.Close()
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return false, 0, fmt.Errorf("size of %s: %w", disk, errno)
	}
	lastPart, err := growTable(f, size)
	if err != nil || lastPart == nil {
		return false, 0, err
	}
	// BLKPG: resize the partition in the kernel while it may be in use
	// (BLKRRPART refuses a disk with mounted partitions).
	part := unix.BlkpgPartition{
		Start:  int64(lastPart.Start * sector),
		Length: int64(lastPart.Size),
		Pno:    int32(lastPart.Index),
	}
	arg := unix.BlkpgIoctlArg{Op: unix.BLKPG_RESIZE_PARTITION, Datalen: int32(unsafe.Sizeof(part)), Data: (*byte)(unsafe.Pointer(&part))}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg))); errno != 0 {
		return false, 0, fmt.Errorf("tell the kernel partition %d of %s grew: %w", lastPart.Index, disk, errno)
	}
	return true, lastPart.Size, nil
}

// growTable extends the table of f, a disk of size bytes, as GrowLast
// does, and returns the grown partition (nil: nothing to grow).
func growTable(f *os.File, size uint64) (*gpt.Partition, error) {
	t, err := gpt.Read(f, sector, sector)
	if err != nil {
		return nil, fmt.Errorf("read the partition table: %w", err)
	}
	if len(t.Partitions) == 0 {
		return nil, nil
	}
	lastPart := t.Partitions[0]
	for _, p := range t.Partitions {
		if p.End > lastPart.End {
			lastPart = p
		}
	}
	usable := size/sector - 34
	end := (usable+1)/(MiB/sector)*(MiB/sector) - 1
	if lastPart.Name != PartEphemeral || end <= lastPart.End {
		return nil, nil
	}
	if err := t.Repair(size); err != nil {
		return nil, err
	}
	lastPart.End = end
	lastPart.Size = (end - lastPart.Start + 1) * sector
	if err := t.Write(f, int64(size)); err != nil {
		return nil, fmt.Errorf("write the partition table: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	return lastPart, nil
}
