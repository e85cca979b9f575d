package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// joinPath appends a struct field name to a field path.
func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// mapKeyPath appends a map key to a field path: path.key for plain keys,
// path["key"] for keys that are empty or contain other characters.
func mapKeyPath(path, key string) string {
	if plainKey(key) {
		return joinPath(path, key)
	}
	return path + "[" + strconv.Quote(key) + "]"
}

func plainKey(key string) bool {
	if key == "" || key[0] == '-' {
		return false
	}
	for _, r := range key {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}

// structInfo describes the YAML fields of a struct type.
type structInfo struct {
	index map[string]int // YAML name -> field index
	names []string       // YAML names in declaration order
}

var structInfoCache sync.Map // reflect.Type -> *structInfo

func fieldsOf(t reflect.Type) *structInfo {
	if v, ok := structInfoCache.Load(t); ok {
		return v.(*structInfo)
	}
	info := &structInfo{index: make(map[string]int)}
	for i := range t.NumField() {
		name, ok := yamlName(t.Field(i))
		if !ok {
			continue
		}
		info.index[name] = i
		info.names = append(info.names, name)
	}
	v, _ := structInfoCache.LoadOrStore(t, info)
	return v.(*structInfo)
}

// yamlName returns the YAML key of a struct field, false when the field is
// not encoded.
func yamlName(f reflect.StructField) (string, bool) {
	if !f.IsExported() {
		return "", false
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return "", false
	case "":
		return strings.ToLower(f.Name), true
	}
	return name, true
}

var durationType = reflect.TypeFor[Duration]()

// describe names what a value of type t looks like in YAML.
func describe(t reflect.Type) string {
	if t == durationType || t == reflect.TypeFor[time.Duration]() {
		return "a duration"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Pointer:
		return describe(t.Elem())
	default:
		return "a mapping"
	}
}

// kindName names the kind of a YAML node.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "a scalar"
	}
}

// maxQuoted is how much of a bad scalar value error messages quote.
const maxQuoted = 64

// typeError reports that node n cannot be stored in a value of type t.
func typeError(n *yaml.Node, t reflect.Type, path string) error {
	want := describe(t)
	if path == "" {
		return &DecodeError{Line: n.Line, Message: fmt.Sprintf("the config document must be %s, not %s", want, kindName(n))}
	}
	var msg string
	if n.Kind == yaml.ScalarNode {
		v := n.Value
		if len(v) > maxQuoted {
			v = v[:maxQuoted] + "..."
		}
		msg = fmt.Sprintf("cannot use %q as %s", v, want)
	} else {
		msg = fmt.Sprintf("cannot use %s as %s", kindName(n), want)
	}
	return &DecodeError{Path: path, Line: n.Line, Message: msg}
}

// suggest returns the candidate closest to name, or "" when none is close
// enough to be a likely typo.
func suggest(name string, candidates []string) string {
	best, bestDist := "", -1
	lower := strings.ToLower(name)
	for _, c := range candidates {
		if strings.ToLower(c) == lower {
			return c
		}
		d := editDistance(lower, strings.ToLower(c))
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	limit := min(max(len(name)/2, 1), 3)
	if bestDist < 0 || bestDist > limit {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
