package doccheck

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

//go:generate env RTHUB_UPDATE_DOCS=1 go test -run=^TestDocs$ .

// TestDocs checks the root module's Markdown: README.md, docs/ and
// load-tests/.
func TestDocs(t *testing.T) {
	CheckModule(t)
}

// TestEveryModuleChecksItsDocs: each module of go.work has a test calling
// CheckModule, so no module's Markdown goes unchecked.
func TestEveryModuleChecksItsDocs(t *testing.T) {
	root := RepoRoot(t)
	work, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	uses := regexp.MustCompile(`(?m)^\s*(\.[^\s)]*)\s*$`).FindAllStringSubmatch(string(work), -1)
	if len(uses) < 2 {
		t.Fatalf("go.work lists %d modules; the pattern no longer reads it", len(uses))
	}
	for _, u := range uses {
		mod := filepath.Join(root, filepath.FromSlash(u[1]))
		found := false
		err := filepath.WalkDir(mod, func(p string, d os.DirEntry, err error) error {
			if err != nil || found {
				return err
			}
			if d.IsDir() {
				if p != mod {
					if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
						return filepath.SkipDir
					}
					if n := d.Name(); n == "node_modules" || n == "testdata" || strings.HasPrefix(n, ".") {
						return filepath.SkipDir
					}
				}
				return nil
			}
			if strings.HasSuffix(p, "_test.go") {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				found = strings.Contains(string(b), "doccheck.CheckModule(t)") || (p == filepath.Join(root, "internal", "doccheck", "doccheck_test.go"))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			t.Errorf("module %s has no test calling doccheck.CheckModule(t)", u[1])
		}
	}
}

func TestParseBlocks(t *testing.T) {
	t.Parallel()
	md := strings.Split(strings.Join([]string{
		"# title",
		"<!-- snippet: a_test.go#Example -->",
		"```go",
		"x := 1",
		"```",
		"1. a list item:",
		"",
		"   <!-- run: .ci/run -->",
		"   ```sh",
		"   go test ./...",
		"   ```",
		"````markdown",
		"```go",
		"not a block of its own",
		"```",
		"````",
		"```",
		"plain",
		"```",
	}, "\n"), "\n")
	got := parseBlocks(md)
	want := []block{
		{line: 3, lang: "go", kind: "snippet", marker: "a_test.go#Example", body: []string{"x := 1"}, first: 3, close: 4},
		{line: 9, indent: "   ", lang: "sh", kind: "run", marker: ".ci/run", body: []string{"go test ./..."}, first: 9, close: 10},
		{line: 12, lang: "markdown", body: []string{"```go", "not a block of its own", "```"}, first: 12, close: 15},
		{line: 17, body: []string{"plain"}, first: 17, close: 18},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d blocks, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.line != w.line || g.indent != w.indent || g.lang != w.lang || g.kind != w.kind || g.marker != w.marker ||
			!slices.Equal(g.body, w.body) || g.first != w.first || g.close != w.close {
			t.Errorf("block %d: got %+v, want %+v", i, g, w)
		}
	}
}

func TestParseCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string // per command: dir | env (sorted k=v) | args joined by ␣ | & when background
	}{
		{"simple", "go test -race work   # a comment", []string{". |  | go␣test␣-race␣work"}},
		{"quotes and env", `JWT_SECRET=s WATCH=false go run ./examples/quickstart &`,
			[]string{". | JWT_SECRET=s WATCH=false | go␣run␣./examples/quickstart | &"}},
		{"single quotes", `go test -run '^$' -bench 'A|B' .`, []string{". |  | go␣test␣-run␣^$␣-bench␣A|B␣."}},
		{"export and continuation", "export A=1\nB='x y' \\\n  prog -f", []string{". | A=1 B=x y | prog␣-f"}},
		{"cd persists", "cd examples/drill && go run ./cmd/drill all\ngo run ./cmd/drill bench",
			[]string{"examples/drill |  | cd␣examples/drill", "examples/drill |  | go␣run␣./cmd/drill␣all", "examples/drill |  | go␣run␣./cmd/drill␣bench"}},
		{"subshell cd", "(cd examples/iotserver && go generate) && go test ./x/...",
			[]string{"examples/iotserver |  | cd␣examples/iotserver", "examples/iotserver |  | go␣generate", ". |  | go␣test␣./x/..."}},
		{"pipes and redirections", `LOG_LEVEL=debug go run ./x 2>&1 | grep 'cid=a b' > out.txt`,
			[]string{". | LOG_LEVEL=debug | go␣run␣./x", ". |  | grep␣cid=a b"}},
		{"substitution", `export S=k
export T=$(go run ./lt -print-token -roles staff)   # HS256
npx artillery run f.yml`,
			[]string{". | S=k | go␣run␣./lt␣-print-token␣-roles␣staff", ". | S=k T=$(go run ./lt -print-token -roles staff) | npx␣artillery␣run␣f.yml"}},
		{"double quotes", `curl -H "Authorization: Bearer $TOKEN" -d '{"a":1}' "x\"y"`,
			[]string{". |  | curl␣-H␣Authorization: Bearer $TOKEN␣-d␣{\"a\":1}␣x\"y"}},
		{"shell variable is not a command", "TOKEN=abc\necho $TOKEN", []string{". |  | echo␣$TOKEN"}},
		{"cd out of the repository", "cd /tmp/x && ls\ncd ~/y", []string{"/tmp/x |  | cd␣/tmp/x", "/tmp/x |  | ls", "~/y |  | cd␣~/y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmds, err := parseCommands("f.md", 1, strings.Split(tt.in, "\n"), ".")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range cmds {
				var env []string
				for k, v := range c.Env {
					env = append(env, k+"="+v)
				}
				slices.Sort(env)
				s := c.Dir + " | " + strings.Join(env, " ") + " | " + strings.Join(c.Args, "␣")
				if c.Background {
					s += " | &"
				}
				got = append(got, s)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestParseCommands_errors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`echo 'open`, `echo "open`, `echo $(open`, `echo )`} {
		if _, err := parseCommands("f.md", 1, []string{in}, "."); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestCommandLines(t *testing.T) {
	t.Parallel()
	cmds, err := parseCommands("f.md", 10, strings.Split("a \\\n  b\n\nc $(d\ne)", "\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, c := range cmds {
		got = append(got, c.Line)
	}
	if want := []int{10, 13, 14, 13}; !slices.Equal(got, want) { // a, then d and e (inside $(...)), then c
		t.Errorf("lines %v, want %v", got, want)
	}
}

func TestDedent(t *testing.T) {
	t.Parallel()
	got := dedent([]string{"", "\t\tfoo := 1  ", "", "\t\tif x {", "\t\t\ty()", "\t\t}", ""})
	want := []string{"foo := 1", "", "if x {", "\ty()", "}"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestPatterns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"A|B", []string{"A", "B"}},
		{"Test(A|B)/sub", []string{"Test(A|B)"}},
		{"^$", []string{"^$"}},
		{`a\|b|[|]c`, []string{`a\|b`, "[|]c"}},
	}
	for _, tt := range tests {
		if got := alternatives(firstLevel(tt.in)); !slices.Equal(got, tt.want) {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

// fixture is a small repository: a Markdown file and the test file its
// snippets come from.
const fixtureSource = `package x

import "fmt"

// Example_plain has no markers: its body is the snippet.
func Example_plain() {
	fmt.Println("hello")
	// Output: hello
}

func Example_region() {
	ctx := 1
	// snippet:begin
	m := map[string]int{
		"a": ctx,
	}
	// snippet:end
	_ = m
}

type Reading struct {
	Temp float64
}

var Data = 1

func helper(a int) int {
	return a + 1
}

func TestSomething(t *testing.T) {}

func BenchmarkBroadcast(b *testing.B) {}
`

// fixtureTSX is a TypeScript source of snippets.
const fixtureTSX = `import { usePresence } from "@rthub/client/react";
  // snippet:begin online
  export function Online() {
    const people = usePresence("staff");
    return <p>{people.length}</p>;
  }
  // snippet:end
// snippet:begin twice
const a = 1;
// snippet:end
// snippet:begin twice
// snippet:end
// snippet:begin open
const b = 2;
`

func writeFixture(t *testing.T, md string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range map[string]string{
		"go.work":        "go 1.26\n",
		"x/x_test.go":    fixtureSource,
		"README.md":      md,
		".ci/run":        "go test -race work\n",
		"x/other/y.go":   "package other\n",
		"x/other/README": "",
		"x/page.tsx":     fixtureTSX,
	} {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestChecker(t *testing.T) {
	t.Parallel()
	good := "<!-- snippet: x/x_test.go#Example_plain -->\n```go\nfmt.Println(\"hello\")\n```\n"
	tests := []struct {
		name  string
		md    string
		probs []string // substrings of the problems, in order
	}{
		{"plain", good, nil},
		{"region and decls", "<!-- snippet: x/x_test.go#Example_region -->\n```go\nm := map[string]int{\n\t\"a\": ctx,\n}\n```\n" +
			"  <!-- snippet: x/x_test.go#Reading,Data,helper -->\n  ```go\n  type Reading struct {\n  \tTemp float64\n  }\n\n  var Data = 1\n\n  func helper(a int) int {\n  \treturn a + 1\n  }\n  ```\n", nil},
		{"drift", "<!-- snippet: x/x_test.go#Example_plain -->\n```go\nfmt.Println(\"hullo\")\n```\n",
			[]string{`README.md:2: Go block differs from x/x_test.go#Example_plain: line 1 of the block is "fmt.Println(\"hullo\")", the source has "fmt.Println(\"hello\")"`}},
		{"extra line", "<!-- snippet: x/x_test.go#Example_plain -->\n```go\nfmt.Println(\"hello\")\nmore()\n```\n",
			[]string{`line 2 of the block is "more()", the source has ""`}},
		{"no marker", "```go\nx := 1\n```\n", []string{"README.md:1: Go block without a <!-- snippet:"}},
		{"unknown decl", "<!-- snippet: x/x_test.go#Nope -->\n```go\n```\n", []string{"no top-level declaration Nope"}},
		{"not a test file", "<!-- snippet: x/other/y.go#X -->\n```go\n```\n", []string{"must be a _test.go file"}},
		{"shell without marker", "```sh\ngo test ./...\n```\n", []string{"shell block without a <!-- run:"}},
		{"run marker ok", "<!-- run: TestSomething@x; .ci/run -->\n```sh\ngo test -run 'TestSome|TestSomething' ./x\ngo test -run '^$' -bench Broadcast ./x\ncd x && go run ./other\n```\n", nil},
		{"outside the repository", "<!-- run: not in CI: elsewhere -->\n```sh\ncd /tmp/elsewhere && go test -run Nothing .\n```\n", nil},
		{"root package", "<!-- run: TestSomething@. -->\n```sh\nls\n```\n", []string{"no func TestSomething in the tests of ."}},
		{"run marker names a missing test", "<!-- run: TestGone@x -->\n```sh\nls\n```\n", []string{"no func TestGone in the tests of x"}},
		{"run marker says nothing", "<!-- run: trust me -->\n```sh\nls\n```\n", []string{"names no Name@dir test"}},
		{"not in CI", "<!-- run: not in CI: needs Docker -->\n```sh\ndocker run x\n```\n", nil},
		{"stale patterns and paths", "<!-- run: .ci/run -->\n```sh\ngo test -run 'TestSomething|TestRenamed' ./x\ngo test -bench=BenchmarkGone -run=^$ ./x\ngo run ./nowhere\ngo test -run X ./other\ncd gone\n```\n",
			[]string{`"TestRenamed" matches no Test/Example/Fuzz function in x`, `"BenchmarkGone" matches no Benchmark function in x`, "go run ./nowhere: no directory nowhere", "cd: no directory gone", "go test ./other: no test files in other"}},
		{"tsx region", "<!-- snippet: x/page.tsx#online -->\n```tsx\nexport function Online() {\n  const people = usePresence(\"staff\");\n  return <p>{people.length}</p>;\n}\n```\n", nil},
		{"tsx drift", "<!-- snippet: x/page.tsx#online -->\n```tsx\nexport function Online() {\n  const people = usePresence(\"admin\");\n  return <p>{people.length}</p>;\n}\n```\n",
			[]string{`README.md:2: TypeScript/JavaScript block differs from x/page.tsx#online: line 2 of the block is "  const people = usePresence(\"admin\");"`}},
		{"ts block without marker", "```ts\nanything goes\n```\n", []string{"TypeScript/JavaScript block without a <!-- snippet:"}},
		{"js block without marker", "```js\nanything goes\n```\n", []string{"TypeScript/JavaScript block without a <!-- snippet:"}},
		{"ts unknown region", "<!-- snippet: x/page.tsx#nope -->\n```ts\n```\n", []string{`no line "// snippet:begin nope"`}},
		{"ts region twice", "<!-- snippet: x/page.tsx#twice -->\n```ts\n```\n", []string{`two regions "twice"`}},
		{"ts region unclosed", "<!-- snippet: x/page.tsx#open -->\n```ts\n```\n", []string{`region "open" has no "// snippet:end" line`}},
		{"ts from a Go file", "<!-- snippet: x/x_test.go#online -->\n```ts\n```\n", []string{"must be a .ts, .tsx or .js file"}},
		{"ts missing file", "<!-- snippet: x/gone.ts#online -->\n```ts\n```\n", []string{"gone.ts"}},
		{"marker on another block", "<!-- run: .ci/run -->\n```json\n{}\n```\n", []string{`before a "json" block`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := writeFixture(t, tt.md)
			c := &checker{root: root}
			if err := c.checkFile("README.md"); err != nil {
				t.Fatal(err)
			}
			if len(c.probs) != len(tt.probs) {
				t.Fatalf("problems:\n  %s\nwant %d like %q", strings.Join(c.probs, "\n  "), len(tt.probs), tt.probs)
			}
			// Problems come last block first; sort both for the comparison.
			for _, want := range tt.probs {
				if !slices.ContainsFunc(c.probs, func(p string) bool { return strings.Contains(p, want) }) {
					t.Errorf("no problem contains %q:\n  %s", want, strings.Join(c.probs, "\n  "))
				}
			}
		})
	}
}

// TestChecker_update: update mode rewrites drifted Go blocks (keeping a
// list item's indentation) and nothing else; a second check is clean.
func TestChecker_update(t *testing.T) {
	t.Parallel()
	md := "intro\n\n1. item\n\n   <!-- snippet: x/x_test.go#Example_region -->\n   ```go\n   old\n   ```\n\n<!-- snippet: x/x_test.go#Example_plain -->\n```go\nfmt.Println(\"hello\")\n```\n<!-- snippet: x/page.tsx#online -->\n```tsx\nold\n```\ntail\n"
	root := writeFixture(t, md)
	c := &checker{root: root, update: true}
	if err := c.checkFile("README.md"); err != nil {
		t.Fatal(err)
	}
	if len(c.probs) > 0 {
		t.Fatalf("problems in update mode: %q", c.probs)
	}
	got, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	want := "intro\n\n1. item\n\n   <!-- snippet: x/x_test.go#Example_region -->\n   ```go\n   m := map[string]int{\n   \t\"a\": ctx,\n   }\n   ```\n\n<!-- snippet: x/x_test.go#Example_plain -->\n```go\nfmt.Println(\"hello\")\n```\n<!-- snippet: x/page.tsx#online -->\n```tsx\nexport function Online() {\n  const people = usePresence(\"staff\");\n  return <p>{people.length}</p>;\n}\n```\ntail\n"
	if string(got) != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", got, want)
	}
	c = &checker{root: root}
	if err := c.checkFile("README.md"); err != nil || len(c.probs) > 0 {
		t.Fatalf("after update: %v %q", err, c.probs)
	}
}

// TestChecker_noUpdateNoWrite: without update mode a drifted file is left
// as it is.
func TestChecker_noUpdateNoWrite(t *testing.T) {
	t.Parallel()
	md := "<!-- snippet: x/x_test.go#Example_plain -->\n```go\nstale\n```\n"
	root := writeFixture(t, md)
	c := &checker{root: root}
	if err := c.checkFile("README.md"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil || string(got) != md || len(c.probs) != 1 {
		t.Fatalf("file %q (err %v), problems %q", got, err, c.probs)
	}
}

func TestGetenv(t *testing.T) {
	t.Parallel()
	cmds, err := parseCommands("f.md", 1, []string{`export A=abc`, `B="$A-x" C=$(printf '%s' hi) D='$lit' prog`}, ".")
	if err != nil {
		t.Fatal(err)
	}
	c := cmds[len(cmds)-1] // prog; printf (inside $(...)) comes first
	if want := `B="$A-x" C=$(printf '%s' hi) D='$lit' prog`; c.String() != want {
		t.Errorf("String() = %q, want %q", c.String(), want)
	}
	get := c.Getenv(t)
	for k, want := range map[string]string{"A": "abc", "B": "abc-x", "C": "hi", "D": "$lit", "E": ""} {
		if got := get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}
