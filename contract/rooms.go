package contract

import "strings"

// segment kinds of a pattern, as far as overlap is concerned.
const (
	segLit  = iota // a literal segment
	segOne         // *, {sub} or any other {placeholder}: one segment
	segRest        // **: one or more segments
)

type seg struct {
	kind int
	lit  string
}

// parsePattern splits a room pattern into segments. Placeholders such as
// {sub} or {id} stand for one segment.
func parsePattern(p string) []seg {
	var out []seg
	for s := range strings.SplitSeq(p, ":") {
		switch {
		case s == "**":
			out = append(out, seg{kind: segRest})
		case s == "*", strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			out = append(out, seg{kind: segOne})
		default:
			out = append(out, seg{kind: segLit, lit: s})
		}
	}
	return out
}

// placeholdersAsWildcards rewrites {placeholders} other than {sub} to "*",
// for checking a documentation pattern with rthub.ValidPattern.
func placeholdersAsWildcards(p string) string {
	segs := strings.Split(p, ":")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && s != "{sub}" {
			segs[i] = "*"
		}
	}
	return strings.Join(segs, ":")
}

// overlap reports whether some room name matches both patterns.
func overlap(a, b []seg) bool {
	for len(a) > 0 && len(b) > 0 {
		if a[0].kind == segRest || b[0].kind == segRest {
			return true // both have at least one segment left
		}
		if a[0].kind == segLit && b[0].kind == segLit && a[0].lit != b[0].lit {
			return false
		}
		a, b = a[1:], b[1:]
	}
	return len(a) == 0 && len(b) == 0
}

// anyOverlap reports whether a pattern of as overlaps a pattern of bs.
func anyOverlap(as, bs []string) bool {
	for _, a := range as {
		for _, b := range bs {
			if overlap(parsePattern(a), parsePattern(b)) {
				return true
			}
		}
	}
	return false
}

// tsPattern writes a room pattern as a TypeScript string literal type: a
// quoted string without wildcards, else a template literal type where each
// *, ** and {placeholder} is ${string}.
func tsPattern(p string) string {
	segs := parsePattern(p)
	wild := false
	parts := make([]string, len(segs))
	for i, s := range segs {
		if s.kind == segLit {
			parts[i] = s.lit
		} else {
			parts[i] = "${string}"
			wild = true
		}
	}
	if !wild {
		return `"` + p + `"`
	}
	return "`" + strings.Join(parts, ":") + "`"
}
