package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// livePaths are the field paths (and everything below them) whose changes
// are applied without a reboot.
var livePaths = []string{
	"machine.network",
	"machine.certSANs",
	"cluster.etcd.snapshots",
	"cluster.etcd.peers",
	"cluster.certificateLifetime",
	"machine.kubelet.extraArgs",
	"machine.kubelet.version",
	"cluster.kubernetesVersion",
	"machine.time",
	"machine.metrics",
	"machine.logging",
}

// liveComponentFields are the fields of every cluster component
// (cluster.<component>.<field>) whose changes are applied live.
var liveComponentFields = []string{"extraArgs", "certSANs", "image"}

// RebootRequired returns the sorted field paths that differ between old and
// new (after defaults) and cannot be applied to a running node; nil when
// every change (if any) can be applied live. Live changes are those under
// livePaths and the liveComponentFields of every cluster component.
func RebootRequired(old, new *Config) []string {
	a, b := make(map[string]string), make(map[string]string)
	flatten(reflect.ValueOf(old.WithDefaults()), "", a)
	flatten(reflect.ValueOf(new.WithDefaults()), "", b)
	var out []string
	for p, va := range a {
		if vb, ok := b[p]; (!ok || va != vb) && !isLive(p) {
			out = append(out, p)
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok && !isLive(p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// isLive reports whether a change at path p can be applied without reboot.
func isLive(p string) bool {
	for _, lp := range livePaths {
		if hasPathPrefix(p, lp) {
			return true
		}
	}
	if rest, ok := strings.CutPrefix(p, "cluster."); ok {
		if _, field, ok := strings.Cut(rest, "."); ok {
			for _, f := range liveComponentFields {
				if hasPathPrefix(field, f) {
					return true
				}
			}
		}
	}
	return false
}

// hasPathPrefix reports whether p is prefix or a field path below it.
func hasPathPrefix(p, prefix string) bool {
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || p[len(prefix)] == '.' || p[len(prefix)] == '['
}

// flatten records every leaf value below v in out, keyed by field path.
func flatten(v reflect.Value, path string, out map[string]string) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			flatten(v.Elem(), path, out)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if name, ok := yamlName(v.Type().Field(i)); ok {
				flatten(v.Field(i), joinPath(path, name), out)
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			flatten(v.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			flatten(iter.Value(), mapKeyPath(path, fmt.Sprint(iter.Key().Interface())), out)
		}
	default:
		out[path] = fmt.Sprintf("%#v", v.Interface())
	}
}
