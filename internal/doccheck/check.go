package doccheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// checker checks Markdown files of one repository.
type checker struct {
	root   string                         // the repository root
	update bool                           // rewrite Go blocks instead of reporting them
	funcs  map[string]map[string]struct{} // test functions by package directory
	probs  []string
}

func (c *checker) problem(file string, line int, format string, args ...any) {
	c.probs = append(c.probs, fmt.Sprintf("%s:%d: ", file, line)+fmt.Sprintf(format, args...))
}

// checkFile checks one Markdown file (a path from the repository root). In
// update mode it rewrites the file's Go blocks from their sources.
func (c *checker) checkFile(file string) error {
	full := filepath.Join(c.root, filepath.FromSlash(file))
	data, err := os.ReadFile(full)
	if err != nil {
		return err
	}
	lines := strings.Split(string(data), "\n")
	blocks := parseBlocks(lines)
	changed := false
	// Rewrite from the last block, so earlier blocks' line indexes hold.
	for i := len(blocks) - 1; i >= 0; i-- {
		b := blocks[i]
		switch {
		case b.lang == "go" || scriptLangs[b.lang]:
			if b.kind != "snippet" {
				if b.lang == "go" {
					c.problem(file, b.line, "Go block without a <!-- snippet: path/to/file_test.go#Name --> line before it (see package internal/doccheck)")
				} else {
					c.problem(file, b.line, "TypeScript/JavaScript block without a <!-- snippet: path/to/file.ts#name --> line before it (see package internal/doccheck)")
				}
				continue
			}
			var want []string
			var err error
			if b.lang == "go" {
				want, err = snippet(c.root, b.marker)
			} else {
				want, err = scriptSnippet(c.root, b.marker)
			}
			if err != nil {
				c.problem(file, b.line, "%v", err)
				continue
			}
			got := dedentBody(b.body)
			if slices.Equal(got, want) {
				continue
			}
			if c.update {
				repl := make([]string, len(want))
				for j, l := range want {
					if l != "" {
						l = b.indent + l
					}
					repl[j] = l
				}
				lines = slices.Replace(lines, b.first, b.close, repl...)
				changed = true
				continue
			}
			what := "Go"
			if b.lang != "go" {
				what = "TypeScript/JavaScript"
			}
			c.problem(file, b.line, "%s block differs from %s: %s", what, b.marker, firstDiff(got, want))
		case shellLangs[b.lang]:
			if b.kind != "run" {
				c.problem(file, b.line, "shell block without a <!-- run: ... --> line before it saying how CI checks it: Name@dir (a test that runs it), .ci/run, or \"not in CI: why\"")
				continue
			}
			c.checkRunMarker(file, b)
			cmds, err := parseCommands(file, b.line+1, b.body, ".")
			if err != nil {
				c.problem(file, b.line, "%v", err)
				continue
			}
			for _, cmd := range cmds {
				c.checkCommand(cmd)
			}
		case b.kind != "":
			c.problem(file, b.line, "<!-- %s: --> before a %q block; it belongs before a go or TypeScript/JavaScript (snippet) or sh (run) block", b.kind, b.lang)
		}
	}
	if changed {
		return os.WriteFile(full, []byte(strings.Join(lines, "\n")), 0o644)
	}
	return nil
}

// dedentBody trims a Markdown block's lines like a snippet's.
func dedentBody(body []string) []string { return dedent(slices.Clone(body)) }

// firstDiff describes the first line where got and want differ.
func firstDiff(got, want []string) string {
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w || i >= len(got) || i >= len(want) {
			return fmt.Sprintf("line %d of the block is %q, the source has %q", i+1, g, w)
		}
	}
	return "they differ"
}

var refRE = regexp.MustCompile(`\b((?:Test|Benchmark|Fuzz|Example)\w*)@(\.|[\w./-]*\w)`)

// checkRunMarker checks a run marker: each Name@dir names a function of the
// tests in dir, and the marker says at least one way the block is checked.
func (c *checker) checkRunMarker(file string, b block) {
	refs := refRE.FindAllStringSubmatch(b.marker, -1)
	for _, m := range refs {
		if !c.hasFunc(m[2], m[1]) {
			c.problem(file, b.line, "run marker: no func %s in the tests of %s", m[1], m[2])
		}
	}
	ci := strings.Contains(b.marker, ".ci/run")
	if ci {
		if _, err := os.Stat(filepath.Join(c.root, ".ci", "run")); err != nil {
			c.problem(file, b.line, "run marker names .ci/run: %v", err)
		}
	}
	if len(refs) == 0 && !ci && !strings.Contains(b.marker, "not in CI") {
		c.problem(file, b.line, "run marker %q names no Name@dir test, no .ci/run and no \"not in CI: why\"", b.marker)
	}
}

// hasFunc reports whether the _test.go files of dir (from the root) declare
// the function name.
func (c *checker) hasFunc(dir, name string) bool {
	_, ok := c.testFuncs(dir)[name]
	return ok
}

// testFuncs returns the top-level functions of dir's _test.go files.
func (c *checker) testFuncs(dir string) map[string]struct{} {
	dir = path.Clean(dir)
	if fs, ok := c.funcs[dir]; ok {
		return fs
	}
	fs := map[string]struct{}{}
	matches, _ := filepath.Glob(filepath.Join(c.root, filepath.FromSlash(dir), "*_test.go"))
	for _, m := range matches {
		f, err := parser.ParseFile(token.NewFileSet(), m, nil, parser.SkipObjectResolution)
		if err != nil {
			continue // go vet reports it
		}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
				fs[fd.Name.Name] = struct{}{}
			}
		}
	}
	if c.funcs == nil {
		c.funcs = map[string]map[string]struct{}{}
	}
	c.funcs[dir] = fs
	return fs
}

// goTestValueFlags are the go test flags that take a value in the next
// word when not written as -flag=value.
var goTestValueFlags = map[string]bool{
	"run": true, "bench": true, "skip": true, "fuzz": true, "list": true, "benchtime": true, "count": true,
	"timeout": true, "cpu": true, "parallel": true, "p": true, "tags": true, "fuzztime": true, "fuzzminimizetime": true,
	"cpuprofile": true, "memprofile": true, "blockprofile": true, "mutexprofile": true, "trace": true,
	"coverprofile": true, "covermode": true, "coverpkg": true, "outputdir": true, "o": true, "exec": true,
	"vet": true, "shuffle": true, "memprofilerate": true, "blockprofilerate": true, "mutexprofilefraction": true,
}

// checkCommand checks what can be checked of a documented command without
// running it: directories of cd and go run exist, and go test patterns
// match functions of the packages named.
func (c *checker) checkCommand(cmd Command) {
	exists := func(rel string) bool {
		st, err := os.Stat(filepath.Join(c.root, filepath.FromSlash(rel)))
		return err == nil && st.IsDir()
	}
	args := cmd.Args
	if path.IsAbs(cmd.Dir) || strings.HasPrefix(cmd.Dir, "~") {
		return // outside the repository
	}
	switch {
	case args[0] == "cd":
		if !exists(cmd.Dir) {
			c.problem(cmd.File, cmd.Line, "cd: no directory %s", cmd.Dir)
		}
	case len(args) >= 3 && args[0] == "go" && args[1] == "run":
		for _, a := range args[2:] {
			if strings.HasPrefix(a, "-") {
				continue
			}
			if strings.HasPrefix(a, ".") && !exists(path.Join(cmd.Dir, a)) {
				c.problem(cmd.File, cmd.Line, "go run %s: no directory %s", a, path.Join(cmd.Dir, a))
			}
			break // the package; the rest are the program's arguments
		}
	case len(args) >= 2 && args[0] == "go" && args[1] == "test":
		c.checkGoTest(cmd)
	}
}

// checkGoTest checks the -run, -skip, -bench and -fuzz patterns of a go test
// command against the functions of its package directories.
func (c *checker) checkGoTest(cmd Command) {
	patterns := map[string]string{}
	var pkgs []string
	args := cmd.Args[2:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-args" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			pkgs = append(pkgs, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		name = strings.TrimPrefix(name, "test.")
		if !hasValue && goTestValueFlags[name] && i+1 < len(args) {
			i++
			value = args[i]
		}
		switch name {
		case "run", "skip", "bench", "fuzz":
			patterns[name] = value
		}
	}
	if len(patterns) == 0 {
		return
	}
	if len(pkgs) == 0 {
		pkgs = []string{"."}
	}
	for _, p := range pkgs {
		if !strings.HasPrefix(p, ".") || strings.HasSuffix(p, "...") {
			continue // an import path or a pattern of packages: not resolved here
		}
		dir := path.Join(cmd.Dir, p)
		funcs := c.testFuncs(dir)
		if len(funcs) == 0 {
			c.problem(cmd.File, cmd.Line, "go test %s: no test files in %s", p, dir)
			continue
		}
		for _, flag := range []string{"run", "skip", "bench", "fuzz"} {
			pat, ok := patterns[flag]
			if !ok {
				continue
			}
			for _, alt := range alternatives(firstLevel(pat)) {
				re, err := regexp.Compile(alt)
				if err != nil {
					c.problem(cmd.File, cmd.Line, "go test -%s %q: %v", flag, pat, err)
					continue
				}
				if re.MatchString("") {
					continue // ^$ and the like: matching nothing is the point
				}
				if !matchesFunc(re, funcs, flag) {
					c.problem(cmd.File, cmd.Line, "go test -%s %q: %q matches no %s function in %s", flag, pat, alt, prefixesOf(flag), dir)
				}
			}
		}
	}
}

// prefixesOf returns the function name prefixes a go test flag selects.
func prefixesOf(flag string) string {
	switch flag {
	case "bench":
		return "Benchmark"
	case "fuzz":
		return "Fuzz"
	}
	return "Test/Example/Fuzz"
}

func matchesFunc(re *regexp.Regexp, funcs map[string]struct{}, flag string) bool {
	for f := range funcs {
		for p := range strings.SplitSeq(prefixesOf(flag), "/") {
			if strings.HasPrefix(f, p) && re.MatchString(f) {
				return true
			}
		}
	}
	return false
}

// firstLevel returns the part of a go test pattern before the first
// unbracketed slash: the part matched against function names.
func firstLevel(p string) string {
	depth := 0
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++
		case '(', '[':
			depth++
		case ')', ']':
			depth--
		case '/':
			if depth == 0 {
				return p[:i]
			}
		}
	}
	return p
}

// alternatives splits a pattern at its top-level | signs.
func alternatives(p string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++
		case '(', '[':
			depth++
		case ')', ']':
			depth--
		case '|':
			if depth == 0 {
				out = append(out, p[start:i])
				start = i + 1
			}
		}
	}
	return append(out, p[start:])
}
