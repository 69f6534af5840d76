package doccheck

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
)

// Command is one simple command of a shell block in the repository's
// Markdown, as a reader would run it from the repository root.
type Command struct {
	// File is the Markdown file (a path from the repository root), Block
	// the line of its code block's opening fence, and Line the line the
	// command starts on.
	File  string
	Block int
	Line  int
	// Dir is the directory the command runs in, from the repository root
	// ("." for the root), following the block's cd commands; an absolute
	// path (or ~) after a cd out of the repository.
	Dir string
	// Env holds the variables set for the command: the block's exports
	// before it and its own NAME=value prefixes, as written (quotes
	// removed; command substitutions and $variables left unexpanded).
	Env map[string]string
	// Assigned names the variables of Env set on the command's own line
	// (NAME=value before it), in order; the others were exported before.
	Assigned []string
	// Args are the command's words, quotes removed.
	Args []string
	// Background reports a command started with a trailing &.
	Background bool

	rawEnv []assignment // Env in order, with each value as written
	text   string       // the command as written
}

// String returns the command as written (its assignments and words).
func (c Command) String() string { return c.text }

// assignment is NAME=value, with the value as written.
type assignment struct {
	name, value, raw string
	local            bool // a prefix of the command, not an earlier export
}

// word is a shell word: its value with quotes removed, its text as written,
// and the command substitutions $(...) in it.
type word struct {
	value, raw string
	subst      []string
	line       int
}

// shTok is a word or an operator (&&, ||, |, ;, &, (, ), or "\n").
type shTok struct {
	op   string // "" for a word
	word word
}

var assignRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// parseCommands splits a shell block, whose first line is firstLine, into
// its simple commands. It knows
// quoting, comments, line continuations, command substitution, operators,
// redirections, subshells, export and cd: enough for documentation, not a
// full shell. Commands inside $(...) are returned too, before the command
// that contains them (they run first).
func parseCommands(file string, firstLine int, lines []string, dir string) ([]Command, error) {
	toks, err := tokenize(strings.Join(lines, "\n"), firstLine)
	if err != nil {
		return nil, fmt.Errorf("%s:%d: %w", file, firstLine, err)
	}
	var (
		out     []Command
		exports []assignment
		dirs    []string // the directory stack of subshells
		cur     []word
	)
	flush := func(background bool) error {
		if len(cur) == 0 {
			return nil
		}
		words := cur
		cur = nil
		// Command substitutions run first, with the exports so far.
		for _, w := range words {
			for _, s := range w.subst {
				sub, err := parseCommands(file, w.line, strings.Split(s, "\n"), dir)
				if err != nil {
					return err
				}
				for i := range sub {
					sub[i].Block = firstLine - 1
					sub[i].rawEnv = append(slices.Clone(exports), sub[i].rawEnv...)
					for _, a := range exports {
						if _, ok := sub[i].Env[a.name]; !ok {
							sub[i].Env[a.name] = a.value
						}
					}
				}
				out = append(out, sub...)
			}
		}
		var local []assignment
		for len(words) > 0 && assignRE.MatchString(words[0].raw) {
			name, value, _ := strings.Cut(words[0].value, "=")
			_, raw, _ := strings.Cut(words[0].raw, "=")
			local = append(local, assignment{name: name, value: value, raw: raw, local: true})
			words = words[1:]
		}
		if len(words) == 0 { // a shell variable, not exported
			return nil
		}
		args := make([]string, len(words))
		for i, w := range words {
			args[i] = w.value
		}
		switch args[0] {
		case "export":
			for _, w := range words[1:] {
				if name, value, ok := strings.Cut(w.value, "="); ok {
					_, raw, _ := strings.Cut(w.raw, "=")
					exports = append(exports, assignment{name: name, value: value, raw: raw})
				}
			}
			return nil
		case "cd":
			switch {
			case len(args) < 2:
			case path.IsAbs(args[1]) || strings.HasPrefix(args[1], "~"):
				dir = path.Clean(args[1]) // outside the repository: not checked
			default:
				dir = path.Clean(path.Join(dir, args[1]))
			}
		}
		raw := make([]string, 0, len(local)+len(words)+1)
		for _, a := range local {
			raw = append(raw, a.name+"="+a.raw)
		}
		for _, w := range words {
			raw = append(raw, w.raw)
		}
		if background {
			raw = append(raw, "&")
		}
		c := Command{File: file, Block: firstLine - 1, Line: words[0].line, Dir: dir, Env: map[string]string{},
			Args: args, Background: background, text: strings.Join(raw, " ")}
		c.rawEnv = append(slices.Clone(exports), local...)
		for _, a := range c.rawEnv {
			c.Env[a.name] = a.value
		}
		for _, a := range local {
			c.Assigned = append(c.Assigned, a.name)
		}
		out = append(out, c)
		return nil
	}
	for _, t := range toks {
		var err error
		switch t.op {
		case "":
			cur = append(cur, t.word)
		case "&":
			err = flush(true)
		case "(":
			err = flush(false)
			dirs = append(dirs, dir)
		case ")":
			err = flush(false)
			if len(dirs) == 0 {
				return nil, fmt.Errorf("%s:%d: unbalanced )", file, firstLine)
			}
			dir, dirs = dirs[len(dirs)-1], dirs[:len(dirs)-1]
		default:
			err = flush(false)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := flush(false); err != nil {
		return nil, err
	}
	return out, nil
}

// tokenize splits shell text into words and operators. Redirections
// (>, >>, <, 2>&1, with their targets) are dropped.
func tokenize(s string, line int) ([]shTok, error) {
	var (
		toks      []shTok
		w         word
		inWord    bool
		skipNext  bool // the next word is a redirection target
		startLine = line
	)
	end := func() {
		if !inWord {
			return
		}
		if skipNext {
			skipNext = false
		} else {
			toks = append(toks, shTok{word: w})
		}
		w, inWord = word{}, false
	}
	add := func(value, raw string) {
		if !inWord {
			w.line, inWord = line, true
		}
		w.value += value
		w.raw += raw
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] == '\n':
			i++
			line++
		case c == '\\' && i+1 < len(s):
			add(s[i+1:i+2], s[i:i+2])
			i++
		case c == ' ' || c == '\t':
			end()
		case c == '\n':
			end()
			toks = append(toks, shTok{op: "\n"})
			line++
		case c == '#' && !inWord:
			for i+1 < len(s) && s[i+1] != '\n' {
				i++
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("line %d: unterminated '", startLine)
			}
			add(s[i+1:i+1+j], s[i:i+2+j])
			line += strings.Count(s[i+1:i+1+j], "\n")
			i += j + 1
		case c == '"':
			j := i + 1
			var val strings.Builder
			for ; j < len(s) && s[j] != '"'; j++ {
				switch {
				case s[j] == '\\' && j+1 < len(s) && strings.IndexByte("\"\\$`", s[j+1]) >= 0:
					val.WriteByte(s[j+1])
					j++
				case s[j] == '$' && j+1 < len(s) && s[j+1] == '(':
					k, err := closeParen(s, j+1)
					if err != nil {
						return nil, fmt.Errorf("line %d: %w", line, err)
					}
					w.subst = append(w.subst, s[j+2:k])
					val.WriteString(s[j : k+1])
					j = k
				default:
					val.WriteByte(s[j])
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("line %d: unterminated \"", startLine)
			}
			add(val.String(), s[i:j+1])
			line += strings.Count(s[i:j], "\n")
			i = j
		case c == '$' && i+1 < len(s) && s[i+1] == '(':
			k, err := closeParen(s, i+1)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			if !inWord {
				w.line, inWord = line, true
			}
			w.subst = append(w.subst, s[i+2:k])
			add(s[i:k+1], s[i:k+1])
			line += strings.Count(s[i:k], "\n")
			i = k
		case c == '>' || c == '<':
			if inWord && strings.Trim(w.raw, "0123456789") == "" {
				w, inWord = word{}, false // a file descriptor number: part of the redirection
			}
			end()
			j := i + 1
			if j < len(s) && s[j] == '>' {
				j++
			}
			if j < len(s) && s[j] == '&' { // >&2, 2>&1: no target word
				j++
				for j < len(s) && strings.IndexByte("0123456789-", s[j]) >= 0 {
					j++
				}
			} else {
				skipNext = true
			}
			i = j - 1
		case c == '&' || c == '|' || c == ';' || c == '(' || c == ')':
			end()
			op := string(c)
			if (c == '&' || c == '|') && i+1 < len(s) && s[i+1] == c {
				op += op
				i++
			}
			toks = append(toks, shTok{op: op})
		default:
			add(string(c), string(c))
		}
	}
	end()
	return toks, nil
}

// closeParen returns the index of the ) that closes the ( at s[open],
// skipping quoted text and nested parentheses.
func closeParen(s string, open int) (int, error) {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i, nil
			}
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return 0, fmt.Errorf("unterminated '")
			}
			i += j + 1
		case '\\':
			i++
		}
	}
	return 0, fmt.Errorf("unterminated $(")
}
