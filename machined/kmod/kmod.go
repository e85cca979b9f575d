// Package kmod loads the kernel modules a machine's hardware needs, as
// PID 1 in metal mode: every device's modalias (/sys/devices/**/modalias) is
// matched against the image's modules.alias, and the matching modules are
// loaded with their dependencies from modules.dep (written by depmod when the
// image is built), dependencies first, through finit_module(2).
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Index is a kernel's module index: aliases and dependencies.
type Index struct {
	// Dir is /lib/modules/<release>.
	Dir     string
	aliases []alias
	deps    map[string][]string // module name -> relative paths of its dependencies
	paths   map[string]string   // module name -> relative path
}

type alias struct{ pattern, module string }

// Open reads modules.alias and modules.dep of dir (/lib/modules/<release>).
func Open(dir string) (*Index, error) {
	ix := &Index{Dir: dir, deps: map[string][]string{}, paths: map[string]string{}}
	af, err := os.Open(filepath.Join(dir, "modules.alias"))
	if err != nil {
		return nil, fmt.Errorf("module aliases: %w", err)
	}
	defer af.Close()
	if err := ix.readAliases(af); err != nil {
		return nil, err
	}
	df, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("module dependencies: %w", err)
	}
	defer df.Close()
	if err := ix.readDeps(df); err != nil {
		return nil, err
	}
	return ix, nil
}

// readAliases parses lines "alias <pattern> <module>".
func (ix *Index) readAliases(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "alias" {
			ix.aliases = append(ix.aliases, alias{pattern: f[1], module: normalize(f[2])})
		}
	}
	return sc.Err()
}

// readDeps parses lines "kernel/a/b.ko: kernel/c.ko kernel/d.ko".
func (ix *Index) readDeps(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		name := moduleName(mod)
		ix.paths[name] = mod
		ix.deps[name] = strings.Fields(rest)
	}
	return sc.Err()
}

// moduleName is the name of a module file: kernel/x/virtio_net.ko.xz → virtio_net.
func moduleName(p string) string {
	base := path.Base(p)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return normalize(base)
}

// normalize treats '-' and '_' in module names alike, as the kernel does.
func normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// Match returns the modules whose alias patterns match modalias.
func (ix *Index) Match(modalias string) []string {
	var out []string
	for _, a := range ix.aliases {
		if ok, _ := path.Match(a.pattern, modalias); ok && !slices.Contains(out, a.module) {
			out = append(out, a.module)
		}
	}
	return out
}

// Order returns the module files to load for the named modules, each
// module's dependencies before it (every dependency's own dependencies
// first, as modprobe does), without repeats (paths relative to Dir).
// Unknown modules are an error.
func (ix *Index) Order(modules []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		for _, d := range ix.deps[name] {
			visit(moduleName(d))
		}
		out = append(out, ix.paths[name])
	}
	var errs []error
	for _, m := range modules {
		name := normalize(m)
		if _, ok := ix.paths[name]; !ok {
			errs = append(errs, fmt.Errorf("module %s: not in modules.dep", m))
			continue
		}
		visit(name)
	}
	return out, errors.Join(errs...)
}

// DeviceAliases reads the modalias of every device under sysDevices
// (/sys/devices).
func DeviceAliases(sysDevices string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(sysDevices, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // devices come and go; unreadable ones are skipped
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if d.Name() != "modalias" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err == nil {
			if a := strings.TrimSpace(string(data)); a != "" && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
		return nil
	})
	return out, err
}

// Load loads the module files (relative to Dir) in order; a module the
// kernel has already is not an error.
func (ix *Index) Load(files []string) (loaded int, err error) {
	var errs []error
	for _, rel := range files {
		f, err := os.Open(filepath.Join(ix.Dir, rel))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		flags := 0
		if strings.HasSuffix(rel, ".xz") || strings.HasSuffix(rel, ".zst") || strings.HasSuffix(rel, ".gz") {
			flags = unix.MODULE_INIT_COMPRESSED_FILE
		}
		err = unix.FinitModule(int(f.Fd()), "", flags)
		f.Close()
		switch {
		case err == nil:
			loaded++
		case errors.Is(err, unix.EEXIST):
		default:
			errs = append(errs, fmt.Errorf("load %s: %w", rel, err))
		}
	}
	return loaded, errors.Join(errs...)
}
