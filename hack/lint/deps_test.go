// Package lint holds repository-wide checks that run as tests.
package lint

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/ballast-os/ballast"

// TestImportDirection enforces the blueprint's dependency rule: api/ and pkg/
// never import machined/, and mains stay thin (cmd/ imports one package).
func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		rel := strings.TrimPrefix(pkg, module+"/")
		switch {
		case strings.HasPrefix(rel, "api/"), strings.HasPrefix(rel, "pkg/"):
			checked++
			for _, imp := range imports {
				if strings.HasPrefix(imp, module+"/machined") {
					t.Errorf("%s imports %s: api/ and pkg/ must not depend on the agent", rel, imp)
				}
			}
		case strings.HasPrefix(rel, "cmd/"):
			checked++
			own := 0
			for _, imp := range imports {
				if strings.HasPrefix(imp, module+"/") {
					own++
				}
			}
			if own != 1 {
				t.Errorf("%s imports %d project packages: a main only calls one entry point", rel, own)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no packages checked: the go list output was not understood")
	}
}
