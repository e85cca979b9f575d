package config

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid matches (with errors.Is) every error that reports a malformed
// or invalid machine config: *DecodeError and *ValidationError.
var ErrInvalid = errors.New("invalid machine config")

// DecodeError reports why a document could not be decoded into a Config.
type DecodeError struct {
	// Path is the field path of the offending value
	// (e.g. "machine.network.interfaces[0].mtu"); empty for syntax errors
	// and problems with the document as a whole.
	Path string
	// Line is the 1-based source line, or 0 when unknown.
	Line int
	// Message describes the problem.
	Message string
}

func (e *DecodeError) Error() string {
	return formatLocated(e.Path, e.Line, e.Message)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *DecodeError) Is(target error) bool { return target == ErrInvalid }

// Problem is one validation failure.
type Problem struct {
	// Path is the field path (e.g. "cluster.network.podSubnets[0]").
	Path string
	// Line is the 1-based source line when the config came from Decode and
	// the field was present in the document, else 0.
	Line int
	// Message describes the problem.
	Message string
}

func (p Problem) String() string { return formatLocated(p.Path, p.Line, p.Message) }

// ValidationError lists every problem found by Validate.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problem(s):", ErrInvalid.Error(), len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// formatLocated renders "path (line N): message", leaving out the parts
// that are unknown.
func formatLocated(path string, line int, msg string) string {
	switch {
	case path != "" && line > 0:
		return fmt.Sprintf("%s (line %d): %s", path, line, msg)
	case path != "":
		return path + ": " + msg
	case line > 0:
		return fmt.Sprintf("line %d: %s", line, msg)
	default:
		return msg
	}
}
