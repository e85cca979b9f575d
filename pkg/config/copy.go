package config

import (
	"maps"
	"reflect"
)

// DeepCopy returns a copy of c that shares no memory with it.
func (c *Config) DeepCopy() *Config {
	if c == nil {
		return nil
	}
	out := deepCopy(reflect.ValueOf(c)).Interface().(*Config)
	out.lines = maps.Clone(c.lines)
	return out
}

// Equal reports whether c and other hold the same settings. Unlike
// reflect.DeepEqual it ignores where the settings came from (source lines).
func (c *Config) Equal(other *Config) bool {
	if c == nil || other == nil {
		return c == other
	}
	a, b := *c, *other
	a.lines, b.lines = nil, nil
	return reflect.DeepEqual(a, b)
}

// deepCopy copies the exported data reachable from v. Unexported fields are
// copied shallowly.
func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		out := reflect.New(v.Type().Elem())
		out.Elem().Set(deepCopy(v.Elem()))
		return out
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		out.Set(v)
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				out.Field(i).Set(deepCopy(v.Field(i)))
			}
		}
		return out
	case reflect.Slice:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(deepCopy(v.Index(i)))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		out := reflect.MakeMapWithSize(v.Type(), v.Len())
		iter := v.MapRange()
		for iter.Next() {
			out.SetMapIndex(deepCopy(iter.Key()), deepCopy(iter.Value()))
		}
		return out
	default:
		return v
	}
}
