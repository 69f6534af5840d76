package doccheck

import (
	"regexp"
	"strings"
)

// block is a fenced code block of a Markdown file.
type block struct {
	line   int      // 1-based line of the opening fence
	indent string   // the fence's indentation, removed from every body line
	lang   string   // the info string's first word, lower case
	kind   string   // the marker before the fence: "snippet", "run" or ""
	marker string   // the marker's text after "snippet:" or "run:"
	body   []string // the lines between the fences, without indent
	first  int      // index in the file's lines of the first body line
	close  int      // index of the closing fence (len(lines) if unclosed)
}

var (
	fenceRE  = regexp.MustCompile("^(```+|~~~+)[ \t]*([^ \t`]*)")
	markerRE = regexp.MustCompile(`^\s*<!--\s*(snippet|run):\s*(.*?)\s*-->\s*$`)
)

// parseBlocks returns the fenced code blocks of a Markdown text split into
// lines. A fence may be indented (inside a list item); the opening fence's
// indentation is stripped from every body line.
func parseBlocks(lines []string) []block {
	var out []block
	for i := 0; i < len(lines); i++ {
		indent, fence, lang, ok := openFence(lines[i])
		if !ok {
			continue
		}
		b := block{line: i + 1, indent: indent, lang: strings.ToLower(lang), first: i + 1, close: len(lines)}
		if i > 0 {
			if m := markerRE.FindStringSubmatch(lines[i-1]); m != nil {
				b.kind, b.marker = m[1], m[2]
			}
		}
		for j := i + 1; j < len(lines); j++ {
			t := strings.TrimSpace(lines[j])
			if strings.HasPrefix(t, fence) && strings.Trim(t, fence[:1]) == "" {
				b.close = j
				break
			}
			b.body = append(b.body, strings.TrimPrefix(lines[j], indent))
		}
		out = append(out, b)
		i = b.close
	}
	return out
}

// openFence reports whether line opens a fenced block, with the fence's
// indentation, the fence itself and the language.
func openFence(line string) (indent, fence, lang string, ok bool) {
	trimmed := strings.TrimLeft(line, " ")
	ind := line[:len(line)-len(trimmed)]
	m := fenceRE.FindStringSubmatch(trimmed)
	if m == nil {
		return "", "", "", false
	}
	return ind, m[1], m[2], true
}

// shellLangs are the info strings of blocks presented as commands to run.
var shellLangs = map[string]bool{"sh": true, "bash": true, "shell": true, "console": true, "zsh": true}
