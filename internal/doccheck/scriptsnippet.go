package doccheck

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// scriptLangs are the info strings of TypeScript and JavaScript blocks. Such
// a block must be preceded by a snippet marker (see the package comment),
// like a Go block.
var scriptLangs = map[string]bool{
	"ts": true, "tsx": true, "typescript": true,
	"js": true, "jsx": true, "javascript": true, "mjs": true,
}

// scriptExts are the files a TypeScript or JavaScript snippet may come from.
var scriptExts = map[string]bool{".ts": true, ".tsx": true, ".mts": true, ".cts": true, ".js": true, ".jsx": true, ".mjs": true}

// scriptSnippet returns the text a TypeScript or JavaScript block's marker
// names: ref is "path/from/root.tsx#name[,name...]", and each name the
// lines between "// snippet:begin name" and the next "// snippet:end" line
// of that file (each alone on its line, indentation ignored), without
// their shared indentation; several names give their regions in order, a
// blank line apart.
func scriptSnippet(root, ref string) ([]string, error) {
	file, names, ok := strings.Cut(ref, "#")
	if !ok || file == "" || names == "" {
		return nil, fmt.Errorf("snippet %q: want path/to/file.ts#name", ref)
	}
	if !scriptExts[path.Ext(file)] || strings.HasSuffix(file, ".d.ts") {
		return nil, fmt.Errorf("snippet %q: the source must be a .ts, .tsx or .js file (one that tsc type-checks), not a declaration file", ref)
	}
	src, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file)))
	if err != nil {
		return nil, fmt.Errorf("snippet %q: %w", ref, err)
	}
	lines := strings.Split(string(src), "\n")
	var out []string
	for i, name := range strings.Split(names, ",") {
		region, err := scriptRegion(lines, strings.TrimSpace(name))
		if err != nil {
			return nil, fmt.Errorf("snippet %q: %w", ref, err)
		}
		if i > 0 {
			out = append(out, "")
		}
		out = append(out, region...)
	}
	return out, nil
}

// scriptRegion returns the lines of region name: exactly one
// "// snippet:begin name" line, closed by a "// snippet:end" line.
func scriptRegion(lines []string, name string) ([]string, error) {
	begin := beginComment + " " + name
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) != begin {
			continue
		}
		if start >= 0 {
			return nil, fmt.Errorf("two regions %q", name)
		}
		start = i + 1
	}
	if start < 0 {
		return nil, fmt.Errorf("no line %q", begin)
	}
	for j := start; j < len(lines); j++ {
		t := strings.TrimSpace(lines[j])
		if strings.HasPrefix(t, beginComment) {
			return nil, fmt.Errorf("region %q: a %q line before its %q", name, t, endComment)
		}
		if t == endComment {
			return dedent(append([]string(nil), lines[start:j]...)), nil
		}
	}
	return nil, fmt.Errorf("region %q has no %q line", name, endComment)
}
