package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ballast-os/ballast/machined/install"
	"github.com/ballast-os/ballast/machined/slots"
)

// slotRecord is where a node keeps its A/B record.
type slotRecord interface {
	Load() (*slots.State, error)
	Save(*slots.State) error
}

// record is this node's: a file beside the slot directories in container
// mode; on a machine, GRUB's environment block (what the boot loader acts
// on) plus the attempts and slot descriptions on STATE.
func (n *Node) record() slotRecord {
	if n.opts.Mode == ModeContainer {
		return fileRecord(filepath.Join(slots.Dir(n.store.Root()), slots.FileName))
	}
	return &metalRecord{details: filepath.Join(n.store.StateDir(), slots.FileName)}
}

// fileRecord is the whole record in one file (container mode).
type fileRecord string

func (f fileRecord) Load() (*slots.State, error) { return slots.Load(string(f)) }
func (f fileRecord) Save(st *slots.State) error  { return slots.Save(string(f), st) }

// Where a machine's GRUB environment block is: on the EFI system
// partition, mounted while it is read or written.
const (
	envPath  = "ballast/grubenv"
	envMount = "/run/ballast/efi"
)

// metalMu serializes access to the EFI system partition's mount.
var metalMu sync.Mutex

// metalRecord keeps active, next and trying in GRUB's environment block,
// which GRUB reads at every boot and where it turns next into trying
// (hack/build-os.sh, build_boot); the rest of the record (the last attempt,
// what each slot holds) is in details, on STATE.
type metalRecord struct {
	details string
}

func (r *metalRecord) Load() (*slots.State, error) {
	st, err := slots.Load(r.details)
	if err != nil {
		return nil, err
	}
	var env map[string]string
	err = withEFI(func(dir string) error {
		b, err := os.ReadFile(filepath.Join(dir, envPath))
		if err != nil {
			return err
		}
		env, err = slots.ParseEnv(b)
		return err
	})
	if err != nil {
		return nil, err
	}
	st.Active, st.Next, st.Trying = slots.A, env["next"], env["trying"]
	if a := env["active"]; a != "" {
		st.Active = a
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("GRUB environment: %w", err)
	}
	return st, nil
}

// Save writes the boot loader's part first, in place (GRUB does the same:
// the block never moves or changes size), then the details.
func (r *metalRecord) Save(st *slots.State) error {
	err := withEFI(func(dir string) error {
		p := filepath.Join(dir, envPath)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		env, err := slots.ParseEnv(b)
		if err != nil {
			return err
		}
		for k, v := range map[string]string{"active": st.Active, "next": st.Next, "trying": st.Trying} {
			if v == "" {
				delete(env, k)
			} else {
				env[k] = v
			}
		}
		out, err := slots.FormatEnv(env)
		if err != nil {
			return err
		}
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(out, 0); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
	if err != nil {
		return fmt.Errorf("GRUB environment: %w", err)
	}
	return slots.Save(r.details, st)
}

// withEFI mounts the EFI system partition for fn.
func withEFI(fn func(dir string) error) (err error) {
	metalMu.Lock()
	defer metalMu.Unlock()
	dev, err := install.FindPartition(install.PartEFI)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(envMount, 0o700); err != nil {
		return err
	}
	if err := unix.Mount(dev, envMount, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "flush"); err != nil {
		return fmt.Errorf("mount the EFI system partition %s: %w", dev, err)
	}
	defer func() {
		if uerr := unix.Unmount(envMount, 0); uerr != nil && err == nil && !strings.Contains(uerr.Error(), "not mounted") {
			err = fmt.Errorf("unmount the EFI system partition: %w", uerr)
		}
	}()
	return fn(envMount)
}
