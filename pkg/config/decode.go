package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxDecodeNodes bounds the number of YAML nodes Decode visits, so that a
// small document cannot make it do unbounded work through aliases.
const maxDecodeNodes = 1 << 20

// YAML short tags used by the decoder.
const (
	tagNull   = "!!null"
	tagBool   = "!!bool"
	tagInt    = "!!int"
	tagBinary = "!!binary"
	tagMerge  = "!!merge"
)

// Decode strictly decodes a single YAML document into a Config.
//
// Unknown fields, values of the wrong type, duplicate keys, YAML syntax
// errors, empty documents and streams of several documents are errors. The
// returned error is a *DecodeError naming the field path and line of the
// problem; it matches ErrInvalid. Decode does not validate the values: use
// Validate (or Load) for that.
func Decode(data []byte) (*Config, error) {
	root, err := parseDocument(data)
	if err != nil {
		return nil, err
	}
	d := &decoder{lines: make(map[string]int), budget: maxDecodeNodes}
	c := &Config{}
	if err := d.decode(root, reflect.ValueOf(c).Elem(), ""); err != nil {
		return nil, err
	}
	c.lines = d.lines
	return c, nil
}

// parseDocument parses data into the root node of its only document.
func parseDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &DecodeError{Message: "empty document"}
		}
		return nil, syntaxError(err)
	}
	root := documentRoot(&doc)
	if root == nil {
		return nil, &DecodeError{Line: doc.Line, Message: "empty document"}
	}
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, syntaxError(err)
		}
		if documentRoot(&extra) != nil {
			return nil, &DecodeError{
				Line:    extra.Line,
				Message: "found a second YAML document; a machine config is a single document",
			}
		}
	}
	return root, nil
}

// documentRoot returns the content of a document node, or nil when the
// document is empty or null.
func documentRoot(doc *yaml.Node) *yaml.Node {
	root := doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == tagNull {
		return nil
	}
	return root
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError converts an error from the YAML parser into a *DecodeError.
func syntaxError(err error) error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &DecodeError{Line: line, Message: "invalid YAML: " + m[2]}
	}
	return &DecodeError{Message: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// decoder walks a YAML node tree against a Go value using reflection.
type decoder struct {
	lines  map[string]int
	budget int
}

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// decode stores the value of n into v; path is v's field path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	n, err := d.resolve(n, path)
	if err != nil {
		return err
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshalerType) {
		return d.text(n, v, path)
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			v.SetZero()
			return nil
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.decode(n, v.Elem(), path)
	case reflect.Struct:
		return d.structure(n, v, path)
	case reflect.Slice:
		return d.sequence(n, v, path)
	case reflect.Map:
		return d.mapping(n, v, path)
	default:
		return d.scalar(n, v, path)
	}
}

// resolve follows aliases and charges the node against the budget.
func (d *decoder) resolve(n *yaml.Node, path string) (*yaml.Node, error) {
	for hops := 0; n.Kind == yaml.AliasNode; hops++ {
		if n.Alias == nil || hops > 100 {
			return nil, &DecodeError{Path: path, Line: n.Line, Message: "unresolvable alias"}
		}
		n = n.Alias
	}
	d.budget--
	if d.budget < 0 {
		return nil, &DecodeError{Path: path, Line: n.Line, Message: "document too large (too many aliased values)"}
	}
	return n, nil
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return typeError(n, v.Type(), path)
	}
	info := fieldsOf(v.Type())
	pairs, err := d.pairs(n, path, func(k string) string { return joinPath(path, k) }, nil)
	if err != nil {
		return err
	}
	for _, p := range pairs {
		fp := joinPath(path, p.key)
		i, ok := info.index[p.key]
		if !ok {
			msg := fmt.Sprintf("unknown field %q", p.key)
			if s := suggest(p.key, info.names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return &DecodeError{Path: fp, Line: p.line, Message: msg}
		}
		d.lines[fp] = p.line
		if err := d.decode(p.value, v.Field(i), fp); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) error {
	if isNull(n) {
		v.SetZero()
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return typeError(n, v.Type(), path)
	}
	if len(n.Content) == 0 {
		// Empty and absent lists are the same thing (they encode alike).
		v.SetZero()
		return nil
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		d.lines[ip] = item.Line
		if err := d.decode(item, s.Index(i), ip); err != nil {
			return err
		}
	}
	v.Set(s)
	return nil
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) error {
	if isNull(n) {
		v.SetZero()
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return typeError(n, v.Type(), path)
	}
	if v.Type().Key().Kind() != reflect.String {
		return fmt.Errorf("config: unsupported map key type %s at %s", v.Type().Key(), path)
	}
	pairs, err := d.pairs(n, path, func(k string) string { return mapKeyPath(path, k) }, nil)
	if err != nil {
		return err
	}
	if len(pairs) == 0 {
		v.SetZero()
		return nil
	}
	m := reflect.MakeMapWithSize(v.Type(), len(pairs))
	for _, p := range pairs {
		kp := mapKeyPath(path, p.key)
		d.lines[kp] = p.line
		elem := reflect.New(v.Type().Elem()).Elem()
		if err := d.decode(p.value, elem, kp); err != nil {
			return err
		}
		m.SetMapIndex(reflect.ValueOf(p.key).Convert(v.Type().Key()), elem)
	}
	v.Set(m)
	return nil
}

// pair is one key/value entry of a mapping.
type pair struct {
	key   string
	line  int
	value *yaml.Node
}

// pairs lists the entries of mapping n in document order, rejecting
// duplicate keys and expanding merge keys ("<<: *anchor"); explicit entries
// win over merged ones. path is the mapping's field path and child names
// the path of an entry, for errors;
// merging tracks the mappings being merged, to reject merge cycles.
func (d *decoder) pairs(n *yaml.Node, path string, child func(string) string, merging map[*yaml.Node]bool) ([]pair, error) {
	if len(n.Content)%2 != 0 {
		return nil, &DecodeError{Path: path, Line: n.Line, Message: "malformed mapping"}
	}
	var out, merged []pair
	seen := make(map[string]int)
	for i := 0; i < len(n.Content); i += 2 {
		kn, err := d.resolve(n.Content[i], path)
		if err != nil {
			return nil, err
		}
		line := n.Content[i].Line
		if kn.Kind == yaml.ScalarNode && kn.ShortTag() == tagMerge {
			m, err := d.merge(n.Content[i+1], path, child, merging)
			if err != nil {
				return nil, err
			}
			merged = append(merged, m...)
			continue
		}
		if kn.Kind != yaml.ScalarNode {
			return nil, &DecodeError{Path: path, Line: line, Message: "mapping keys must be strings"}
		}
		key, err := scalarString(kn)
		if err != nil {
			return nil, &DecodeError{Path: child(kn.Value), Line: line, Message: err.Error()}
		}
		if first, dup := seen[key]; dup {
			return nil, &DecodeError{
				Path:    child(key),
				Line:    line,
				Message: fmt.Sprintf("duplicate key %q (first defined on line %d)", key, first),
			}
		}
		seen[key] = line
		out = append(out, pair{key: key, line: line, value: n.Content[i+1]})
	}
	for _, p := range merged {
		if _, ok := seen[p.key]; ok {
			continue
		}
		seen[p.key] = p.line
		out = append(out, p)
	}
	return out, nil
}

// merge returns the entries contributed by the value of a merge key: a
// mapping or a list of mappings (earlier mappings win).
func (d *decoder) merge(v *yaml.Node, path string, child func(string) string, merging map[*yaml.Node]bool) ([]pair, error) {
	v, err := d.resolve(v, path)
	if err != nil {
		return nil, err
	}
	var sources []*yaml.Node
	switch v.Kind {
	case yaml.MappingNode:
		sources = []*yaml.Node{v}
	case yaml.SequenceNode:
		for _, item := range v.Content {
			item, err := d.resolve(item, path)
			if err != nil {
				return nil, err
			}
			sources = append(sources, item)
		}
	}
	var out []pair
	seen := make(map[string]bool)
	for _, src := range sources {
		if src.Kind != yaml.MappingNode {
			return nil, &DecodeError{Path: path, Line: src.Line, Message: "merge key (<<) needs a mapping or a list of mappings"}
		}
		if merging[src] {
			return nil, &DecodeError{Path: path, Line: src.Line, Message: "recursive merge key (<<)"}
		}
		next := make(map[*yaml.Node]bool, len(merging)+1)
		for k := range merging {
			next[k] = true
		}
		next[src] = true
		ps, err := d.pairs(src, path, child, next)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			if !seen[p.key] {
				seen[p.key] = true
				out = append(out, p)
			}
		}
	}
	if len(sources) == 0 {
		return nil, &DecodeError{Path: path, Line: v.Line, Message: "merge key (<<) needs a mapping or a list of mappings"}
	}
	return out, nil
}

// text decodes a scalar through the value's encoding.TextUnmarshaler.
func (d *decoder) text(n *yaml.Node, v reflect.Value, path string) error {
	if isNull(n) {
		v.SetZero()
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return typeError(n, v.Type(), path)
	}
	s, err := scalarString(n)
	if err != nil {
		return &DecodeError{Path: path, Line: n.Line, Message: err.Error()}
	}
	u := v.Addr().Interface().(encoding.TextUnmarshaler)
	if err := u.UnmarshalText([]byte(s)); err != nil {
		return &DecodeError{Path: path, Line: n.Line, Message: err.Error()}
	}
	return nil
}

// scalar decodes strings, booleans and integers.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, v.Type(), path)
	}
	tag := n.ShortTag()
	if tag == tagNull {
		v.SetZero()
		return nil
	}
	bad := func() error { return typeError(n, v.Type(), path) }
	switch v.Kind() {
	case reflect.String:
		s, err := scalarString(n)
		if err != nil {
			return &DecodeError{Path: path, Line: n.Line, Message: err.Error()}
		}
		v.SetString(s)
	case reflect.Bool:
		var b bool
		if tag != tagBool || n.Decode(&b) != nil {
			return bad()
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if tag != tagInt || n.Decode(&i) != nil {
			return bad()
		}
		if v.OverflowInt(i) {
			return &DecodeError{Path: path, Line: n.Line, Message: fmt.Sprintf("integer %s is out of range", n.Value)}
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		if tag != tagInt || n.Decode(&u) != nil {
			return bad()
		}
		if v.OverflowUint(u) {
			return &DecodeError{Path: path, Line: n.Line, Message: fmt.Sprintf("integer %s is out of range", n.Value)}
		}
		v.SetUint(u)
	default:
		return fmt.Errorf("config: unsupported field type %s at %s", v.Type(), path)
	}
	return nil
}

// scalarString returns the string value of a scalar node, decoding
// !!binary (base64) values as the YAML encoder writes strings that are not
// valid UTF-8 that way.
func scalarString(n *yaml.Node) (string, error) {
	if n.ShortTag() != tagBinary {
		return n.Value, nil
	}
	var s string
	if err := n.Decode(&s); err != nil {
		return "", errors.New("invalid !!binary value")
	}
	return s, nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == tagNull
}
