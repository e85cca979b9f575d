package config

import (
	"bytes"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
)

// diffContext is the number of unchanged lines shown around each change.
const diffContext = 3

// Diff returns a unified diff (3 lines of context) from old to new, labelled
// with oldName and newName, or "" when the two are identical.
func Diff(oldName string, old []byte, newName string, new []byte) string {
	if bytes.Equal(old, new) {
		return ""
	}
	out, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A:        diffLines(old),
		B:        diffLines(new),
		FromFile: oldName,
		ToFile:   newName,
		Context:  diffContext,
	})
	if err != nil {
		// Writing to a strings.Builder cannot fail; keep the signature simple.
		return ""
	}
	return out
}

// diffLines splits text into lines that keep their "\n"; a last line
// without one is marked the way diff(1) does.
func diffLines(text []byte) []string {
	if len(text) == 0 {
		return nil
	}
	lines := strings.SplitAfter(string(text), "\n")
	if last := lines[len(lines)-1]; last == "" {
		lines = lines[:len(lines)-1]
	} else {
		lines[len(lines)-1] = last + "\n\\ No newline at end of file\n"
	}
	return lines
}
