// Package doccheck keeps the repository's Markdown from drifting away from
// the code: every Go block is a copy of compiled Go source, and every shell
// block says how CI checks its commands.
//
// # Go blocks
//
// A Go code block is preceded by a line naming its source, a _test.go file
// (a path from the repository root) and a top-level declaration in it:
//
//	<!-- snippet: internal/docsnippets/readme_test.go#Example_quickstart -->
//	```go
//	...
//	```
//
// The block holds, without their shared indentation:
//   - the lines between a "// snippet:begin" and a "// snippet:end" line
//     comment in the named function, if it has them (setup before and checks
//     after stay out of the docs);
//   - else, for an Example function, its body (without its output comment);
//   - else the declaration itself (func, type, var or const, from its keyword
//     to its end).
//
// Several names separated by commas give their snippets in order, a blank
// line apart. The source is compiled, vetted and (for an Example with an
// Output comment) run by go test in its own module; CheckModule fails when a
// block differs from its source. To rewrite the blocks from their sources,
// run the docs tests with RTHUB_UPDATE_DOCS=1 (the variable the repository's
// other generated docs use; each module's docs test has a go:generate line
// doing it):
//
//	RTHUB_UPDATE_DOCS=1 go test -run '^TestDocs$' work
//
// Without it no file is ever written.
//
// # TypeScript and JavaScript blocks
//
// A ts, tsx, typescript, js, jsx, javascript or mjs block preceded by a
// snippet marker naming a .ts, .tsx or .js file (a path from the
// repository root) and a region name is checked the same way:
//
//	<!-- snippet: clients/js/test/react-page/online.tsx#online -->
//	```tsx
//	...
//	```
//
// The block holds, without their shared indentation, the lines between
// "// snippet:begin online" and the next "// snippet:end" of that file
// (each alone on its line); several names separated by commas give their
// regions in order, a blank line apart. The file must be one a test
// type-checks with tsc (the block is then known to compile), and the
// update mode rewrites these blocks too. A block of these languages without
// a marker is a problem, as a Go block is.
//
// # Shell blocks
//
// A sh (bash, shell, console) block is preceded by a line saying how its
// commands are checked:
//
//	<!-- run: TestProcess_DemoMode@examples/iotserver; not in CI: needs a browser -->
//
// Name@dir names a test (benchmark, fuzz test or example) in the package at
// dir that runs the commands or a bounded variant of them; ".ci/run" means
// CI runs them as written; "not in CI: why" says what CI lacks. Every
// Name@dir must exist. The commands themselves are checked as far as that
// is possible without running them: directories given to cd and go run
// exist, and every -run, -skip, -bench and -fuzz pattern of a go test
// command matches a function of the package it names. Tests that run or
// validate documented commands find them with [Commands] and [GoRuns].
package doccheck

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// UpdateEnv is the environment variable that makes CheckModule rewrite Go
// blocks from their sources ("1") instead of failing.
const UpdateEnv = "RTHUB_UPDATE_DOCS"

// CheckModule checks the Markdown files of the module of the current
// directory (a test's package directory): every *.md file in the module,
// outside nested modules, testdata and node_modules. Each module of the
// repository calls it from one test, named TestDocs by convention.
func CheckModule(t testing.TB) {
	t.Helper()
	root := RepoRoot(t)
	mod, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := markdownFiles(root, mod, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Logf("doccheck: no Markdown files in %s", mod)
	}
	c := &checker{root: root, update: os.Getenv(UpdateEnv) == "1"}
	for _, f := range files {
		if err := c.checkFile(f); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range c.probs {
		t.Error(p)
	}
	if len(c.probs) > 0 {
		t.Log("doccheck: see the package comment of internal/doccheck; " + UpdateEnv + "=1 go test -run '^TestDocs$' work rewrites Go blocks from their sources (go generate in this package does it for this module)")
	}
}

// RepoRoot returns the repository root: the nearest directory above the
// current one that holds go.work. Without one (a module used outside the
// repository) the test is skipped.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("doccheck: no go.work above the current directory; the documentation is checked from the repository")
		}
		dir = parent
	}
}

// moduleRoot returns the nearest directory at or above the current one
// holding a go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("doccheck: no go.mod at or above the current directory")
		}
		dir = parent
	}
}

// markdownFiles lists the *.md files under dir, as paths from root, outside
// hidden directories, testdata and node_modules, and, unless nested, outside
// the modules nested in dir's.
func markdownFiles(root, dir string, nested bool) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == dir {
				return nil
			}
			name := d.Name()
			if strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil && !nested {
				return filepath.SkipDir // another module: its own test checks it
			}
			return nil
		}
		if strings.HasSuffix(p, ".md") {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out, err
}

// Commands returns every command of the shell blocks in the repository's
// Markdown (all of it, every module's).
func Commands(t testing.TB) []Command {
	t.Helper()
	root := RepoRoot(t)
	files, err := markdownFiles(root, root, true)
	if err != nil {
		t.Fatal(err)
	}
	var out []Command
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range parseBlocks(strings.Split(string(data), "\n")) {
			if !shellLangs[b.lang] {
				continue
			}
			cmds, err := parseCommands(f, b.line+1, b.body, ".")
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, cmds...)
		}
	}
	return out
}

// ParseShell parses shell text (a line a program printed, say) into
// commands, as in a block of Markdown run from the repository root.
func ParseShell(text string) ([]Command, error) {
	return parseCommands("", 1, strings.Split(text, "\n"), ".")
}

// CodeBlock is a fenced code block of a Markdown file.
type CodeBlock struct {
	Line  int      // the line of the opening fence
	Lang  string   // the info string's first word, lower case
	Lines []string // the block's lines, without the fence's indentation
}

// CodeBlocks returns the fenced code blocks of a Markdown file (a path from
// the repository root).
func CodeBlocks(t testing.TB, file string) []CodeBlock {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(RepoRoot(t), filepath.FromSlash(file)))
	if err != nil {
		t.Fatal(err)
	}
	var out []CodeBlock
	for _, b := range parseBlocks(strings.Split(string(data), "\n")) {
		out = append(out, CodeBlock{Line: b.line, Lang: b.lang, Lines: b.body})
	}
	return out
}

// CheckEnvCommands checks the documented "go run" commands of a program
// configured only by environment variables and taking no arguments (dir as
// in [GoRuns]): each command's variables must parse with load (the
// program's own configuration function, given a getenv) and each variable it
// sets must be one load reads. It returns the number of commands checked.
func CheckEnvCommands(t testing.TB, dir string, load func(getenv func(string) string) error) int {
	t.Helper()
	cmds := GoRuns(t, dir)
	for _, c := range cmds {
		get := c.Getenv(t)
		read := map[string]bool{}
		if err := load(func(k string) string { read[k] = true; return get(k) }); err != nil {
			t.Errorf("%s:%d: %s: %v", c.File, c.Line, c, err)
		}
		for _, k := range c.Assigned {
			if !read[k] {
				t.Errorf("%s:%d: %s sets %s, which %s does not read", c.File, c.Line, c, k, dir)
			}
		}
		if len(c.Args) > 0 {
			t.Errorf("%s:%d: %s: arguments %q, but %s takes none", c.File, c.Line, c, c.Args, dir)
		}
	}
	return len(cmds)
}

// GoRuns returns the documented "go run" commands of the package in dir (a
// path from the repository root, e.g. "examples/quickstart"), however the
// Markdown names it (go run ./examples/quickstart from the root, go run .
// after cd examples/quickstart), with Args holding the program's arguments
// only. A test that gets none fails: the documentation no longer mentions
// the program, and the test checks nothing.
func GoRuns(t testing.TB, dir string) []Command {
	t.Helper()
	var out []Command
	for _, c := range Commands(t) {
		if len(c.Args) < 3 || c.Args[0] != "go" || c.Args[1] != "run" {
			continue
		}
		i := 2
		for i < len(c.Args) && strings.HasPrefix(c.Args[i], "-") {
			i++ // go run's own flags (-race)
		}
		if i == len(c.Args) || path.Join(c.Dir, c.Args[i]) != path.Clean(dir) {
			continue
		}
		c.Args = slices.Clone(c.Args[i+1:])
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatalf("doccheck: no documented go run of %s", dir)
	}
	return out
}

// Getenv returns a lookup of the command's variables. Values with command
// substitutions or $variables are expanded by bash, run in the command's
// directory with the assignments as written, as a reader's shell would.
func (c Command) Getenv(t testing.TB) func(string) string {
	t.Helper()
	expand := false
	for _, a := range c.rawEnv {
		expand = expand || strings.ContainsAny(a.raw, "$`")
	}
	if !expand {
		return func(k string) string { return c.Env[k] }
	}
	var script strings.Builder
	for _, a := range c.rawEnv {
		script.WriteString("export " + a.name + "=" + a.raw + "\n")
	}
	for _, a := range c.rawEnv {
		script.WriteString(`printf '%s\0' "$` + a.name + `"` + "\n")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = filepath.Join(RepoRoot(t), filepath.FromSlash(c.Dir))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s:%d: expanding the variables of %q with bash: %v\n%s", c.File, c.Line, c, err, stderr.String())
	}
	vals := strings.Split(string(out), "\x00")
	env := map[string]string{}
	for i, a := range c.rawEnv {
		if i < len(vals) {
			env[a.name] = vals[i]
		}
	}
	return func(k string) string { return env[k] }
}
