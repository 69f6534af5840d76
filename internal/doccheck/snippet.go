package doccheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
)

// Region comments inside a function: the snippet is the lines between them.
const (
	beginComment = "// snippet:begin"
	endComment   = "// snippet:end"
)

// snippet returns the Go text a marker names: ref is
// "path/from/root_test.go#Name[,Name...]".
func snippet(root, ref string) ([]string, error) {
	path, names, ok := strings.Cut(ref, "#")
	if !ok || path == "" || names == "" {
		return nil, fmt.Errorf("snippet %q: want path/to/file_test.go#Name", ref)
	}
	if !strings.HasSuffix(path, "_test.go") {
		return nil, fmt.Errorf("snippet %q: the source must be a _test.go file (go test and go vet compile it)", ref)
	}
	src, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(path)))
	if err != nil {
		return nil, fmt.Errorf("snippet %q: %w", ref, err)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("snippet %q: %w", ref, err)
	}
	srcLines := strings.Split(string(src), "\n")
	var out []string
	for i, name := range strings.Split(names, ",") {
		lines, err := declSnippet(fset, f, srcLines, strings.TrimSpace(name))
		if err != nil {
			return nil, fmt.Errorf("snippet %q: %w", ref, err)
		}
		if i > 0 {
			out = append(out, "")
		}
		out = append(out, lines...)
	}
	return out, nil
}

// declSnippet extracts the snippet of the top-level declaration name.
func declSnippet(fset *token.FileSet, f *ast.File, src []string, name string) ([]string, error) {
	line := func(p token.Pos) int { return fset.Position(p).Line } // 1-based
	// span returns the source lines from..to (1-based, inclusive).
	span := func(from, to int) []string { return dedent(src[from-1 : to]) }
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv != nil || d.Name.Name != name {
				continue
			}
			if d.Body == nil {
				return nil, fmt.Errorf("%s has no body", name)
			}
			begin, end, err := region(fset, f, d.Body)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			switch {
			case begin > 0:
				return span(begin+1, end-1), nil
			case strings.HasPrefix(name, "Example"):
				end := line(d.Body.Rbrace)
				if out := outputComment(f, d.Body); out.IsValid() {
					end = line(out) // the output is the test's, not the reader's
				}
				return span(line(d.Body.Lbrace)+1, end-1), nil
			default:
				return span(line(d.Pos()), line(d.End())), nil
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				var n string
				switch s := s.(type) {
				case *ast.TypeSpec:
					n = s.Name.Name
				case *ast.ValueSpec:
					if len(s.Names) == 1 {
						n = s.Names[0].Name
					}
				}
				if n != name {
					continue
				}
				if d.Lparen.IsValid() {
					return nil, fmt.Errorf("%s is in a grouped declaration: give it its own", name)
				}
				return span(line(d.Pos()), line(d.End())), nil
			}
		}
	}
	return nil, fmt.Errorf("no top-level declaration %s", name)
}

// outputComment returns the position of an Example's output comment, or
// token.NoPos.
func outputComment(f *ast.File, body *ast.BlockStmt) token.Pos {
	for _, g := range f.Comments {
		if g.Pos() < body.Lbrace || g.End() > body.Rbrace {
			continue
		}
		t := strings.TrimSpace(strings.TrimPrefix(g.List[0].Text, "//"))
		if strings.HasPrefix(t, "Output:") || strings.HasPrefix(t, "Unordered output:") {
			return g.Pos()
		}
	}
	return token.NoPos
}

// region finds the lines of the begin and end comments inside body: 0, 0
// when there are none.
func region(fset *token.FileSet, f *ast.File, body *ast.BlockStmt) (begin, end int, err error) {
	for _, g := range f.Comments {
		for _, c := range g.List {
			if c.Pos() < body.Lbrace || c.End() > body.Rbrace {
				continue
			}
			switch strings.TrimSpace(c.Text) {
			case beginComment:
				if begin > 0 {
					return 0, 0, fmt.Errorf("two %q comments", beginComment)
				}
				begin = fset.Position(c.Pos()).Line
			case endComment:
				if end > 0 {
					return 0, 0, fmt.Errorf("two %q comments", endComment)
				}
				end = fset.Position(c.Pos()).Line
			}
		}
	}
	if (begin > 0) != (end > 0) || end < begin {
		return 0, 0, fmt.Errorf("want one %q line and, after it, one %q line", beginComment, endComment)
	}
	return begin, end, nil
}

// dedent removes trailing white space, leading and trailing blank lines,
// and the indentation every other line shares.
func dedent(lines []string) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		out = append(out, strings.TrimRight(l, " \t\r"))
	}
	for len(out) > 0 && out[0] == "" {
		out = out[1:]
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	prefix := ""
	first := true
	for _, l := range out {
		if l == "" {
			continue
		}
		ind := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		if first {
			prefix, first = ind, false
			continue
		}
		for !strings.HasPrefix(ind, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	for i, l := range out {
		out[i] = strings.TrimPrefix(l, prefix)
	}
	return out
}
