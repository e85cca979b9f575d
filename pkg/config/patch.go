package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"go.yaml.in/yaml/v3"
)

// ApplyPatches applies patches, in order, to the machine config doc and
// returns the patched config encoded with Bytes.
//
// Each patch is inline YAML or JSON, or "@path" to read it from a file. A
// patch whose top level is a list is an RFC 6902 JSON patch (operations
// add, remove, replace, move, copy and test on paths like
// /machine/network/hostname); a mapping is an RFC 7396 merge patch, where
// null deletes a field. doc and the result of every patch must decode
// strictly (see Decode): a patch that introduces an unknown field or a value
// of the wrong type fails. The result is not validated. Errors name the
// patch, e.g. `patch 2 (@cp.yaml): ...`.
func ApplyPatches(doc []byte, patches []string) ([]byte, error) {
	cfg, err := Decode(doc)
	if err != nil {
		return nil, fmt.Errorf("decode config to patch: %w", err)
	}
	for i, p := range patches {
		name := fmt.Sprintf("patch %d", i+1)
		if file, ok := strings.CutPrefix(p, "@"); ok {
			name = fmt.Sprintf("patch %d (@%s)", i+1, file)
		}
		if cfg, err = applyPatch(cfg, p); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return cfg.Bytes()
}

// applyPatch applies one patch (inline or @file) to cfg.
func applyPatch(cfg *Config, patch string) (*Config, error) {
	data := []byte(patch)
	if file, ok := strings.CutPrefix(patch, "@"); ok {
		var err error
		if data, err = os.ReadFile(file); err != nil {
			return nil, fmt.Errorf("read patch: %w", err)
		}
	}
	value, err := parsePatch(data)
	if err != nil {
		return nil, err
	}
	patchJSON, err := marshalJSON(value)
	if err != nil {
		return nil, fmt.Errorf("convert patch to JSON: %w", err)
	}
	docJSON, err := marshalJSON(cfg)
	if err != nil {
		return nil, fmt.Errorf("convert config to JSON: %w", err)
	}
	var out []byte
	switch value.(type) {
	case []any:
		p, err := jsonpatch.DecodePatch(patchJSON)
		if err != nil {
			return nil, fmt.Errorf("invalid JSON patch: %w", err)
		}
		if out, err = p.Apply(docJSON); err != nil {
			return nil, fmt.Errorf("apply JSON patch: %w", err)
		}
	case map[string]any:
		if out, err = jsonpatch.MergePatch(docJSON, patchJSON); err != nil {
			return nil, fmt.Errorf("apply merge patch: %w", err)
		}
	default:
		return nil, errors.New("a patch must be a mapping (merge patch) or a list of operations (JSON patch)")
	}
	patched, err := Decode(out)
	if err != nil {
		var de *DecodeError
		if errors.As(err, &de) {
			// Lines of the intermediate JSON document mean nothing to users.
			err = &DecodeError{Path: de.Path, Message: de.Message}
		}
		return nil, fmt.Errorf("patched config: %w", err)
	}
	patched.lines = nil
	return patched, nil
}

// parsePatch parses a single YAML (or JSON) document into plain Go values.
func parsePatch(data []byte) (any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var value any
	if err := dec.Decode(&value); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty patch")
		}
		return nil, fmt.Errorf("parse patch: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse patch: a patch must be a single YAML document")
	}
	if value == nil {
		return nil, errors.New("empty patch")
	}
	return jsonValue(value)
}

// jsonValue converts a value decoded from YAML into one encoding/json can
// marshal.
func jsonValue(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			v[k] = c
		}
		return v, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			s, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("patch has a non-string key %v", k)
			}
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[s] = c
		}
		return out, nil
	case []any:
		for i, e := range v {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			v[i] = c
		}
		return v, nil
	case time.Time:
		return v.Format(time.RFC3339Nano), nil
	default:
		return v, nil
	}
}

// marshalJSON encodes v as JSON without HTML escaping.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
