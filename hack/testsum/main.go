// Command testsum reads `go test -json` on stdin and prints what ran: one
// line per package with its passed, failed and skipped test counts, the
// names of skipped tests (so a skip is never mistaken for a pass) and the
// full output of every failed test. It exits non-zero when a test or a
// package build failed, or when nothing ran at all.
//
//	go test -json ./... | go run ./hack/testsum [-v] [-title NAME]
//
// With -v every output line is echoed as it arrives (for long end-to-end
// runs, whose progress and figures a CI reader wants to see).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

type pkgResult struct {
	pass, fail, skip int
	elapsed          float64
	failed           bool // the package itself failed (build error, panic, TestMain)
	skipped          []string
	output           map[string]*strings.Builder // per test ("" = package level)
	failedTests      []string
}

func main() {
	verbose := flag.Bool("v", false, "echo every output line as it arrives")
	title := flag.String("title", "tests", "name printed above the summary")
	flag.Parse()
	os.Exit(run(os.Stdin, os.Stdout, *verbose, *title))
}

func run(in io.Reader, out io.Writer, verbose bool, title string) int {
	pkgs := map[string]*pkgResult{}
	get := func(name string) *pkgResult {
		p, ok := pkgs[name]
		if !ok {
			p = &pkgResult{output: map[string]*strings.Builder{}}
			pkgs[name] = p
		}
		return p
	}
	start := time.Now()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if err := json.Unmarshal(line, &ev); err != nil || ev.Action == "" {
			// Not test2json: a build error printed by go test itself.
			fmt.Fprintln(out, string(line))
			continue
		}
		p := get(ev.Package)
		switch ev.Action {
		case "output":
			b, ok := p.output[ev.Test]
			if !ok {
				b = &strings.Builder{}
				p.output[ev.Test] = b
			}
			b.WriteString(ev.Output)
			if verbose {
				fmt.Fprint(out, ev.Output)
			}
		case "pass", "fail", "skip":
			if ev.Test == "" {
				p.elapsed = ev.Elapsed
				if ev.Action == "fail" {
					p.failed = true
				}
				continue
			}
			switch ev.Action {
			case "pass":
				p.pass++
			case "fail":
				p.fail++
				p.failedTests = append(p.failedTests, ev.Test)
			case "skip":
				p.skip++
				p.skipped = append(p.skipped, ev.Test+": "+skipReason(p.output[ev.Test]))
			}
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(out, "testsum: read:", err)
		return 2
	}
	return report(out, pkgs, title, time.Since(start))
}

// skipReason is the last line a skipped test logged (its t.Skip message).
func skipReason(b *strings.Builder) string {
	if b == nil {
		return "no reason given"
	}
	var last string
	for _, l := range strings.Split(b.String(), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "---") && !strings.HasPrefix(l, "===") {
			last = l
		}
	}
	if last == "" {
		return "no reason given"
	}
	return last
}

func report(out io.Writer, pkgs map[string]*pkgResult, title string, wall time.Duration) int {
	names := make([]string, 0, len(pkgs))
	for n := range pkgs {
		names = append(names, n)
	}
	sort.Strings(names)

	code := 0
	for _, n := range names {
		p := pkgs[n]
		for _, tn := range p.failedTests {
			fmt.Fprintf(out, "\n--- output of failed test %s %s ---\n%s", n, tn, p.output[tn])
		}
		if p.failed && len(p.failedTests) == 0 {
			fmt.Fprintf(out, "\n--- output of failed package %s ---\n%s", n, p.output[""])
		}
	}

	var total pkgResult
	fmt.Fprintf(out, "\n%s: what ran\n", title)
	fmt.Fprintf(out, "  %-52s %6s %6s %6s %9s\n", "PACKAGE", "PASS", "FAIL", "SKIP", "TIME")
	for _, n := range names {
		p := pkgs[n]
		status := ""
		switch {
		case p.failed || p.fail > 0:
			status = "  FAILED"
			code = 1
		case p.pass+p.fail+p.skip == 0:
			status = "  (no tests)"
		}
		fmt.Fprintf(out, "  %-52s %6d %6d %6d %8.1fs%s\n", strings.TrimPrefix(n, "github.com/ballast-os/ballast/"), p.pass, p.fail, p.skip, p.elapsed, status)
		total.pass += p.pass
		total.fail += p.fail
		total.skip += p.skip
	}
	fmt.Fprintf(out, "  %-52s %6d %6d %6d %8.1fs\n", "TOTAL", total.pass, total.fail, total.skip, wall.Seconds())
	for _, n := range names {
		for _, s := range pkgs[n].skipped {
			fmt.Fprintf(out, "  skipped: %s %s\n", strings.TrimPrefix(n, "github.com/ballast-os/ballast/"), s)
		}
	}
	if total.pass+total.fail+total.skip == 0 {
		fmt.Fprintln(out, "testsum: no test ran")
		return 1
	}
	return code
}
