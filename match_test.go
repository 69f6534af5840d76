package rthub

import (
	"errors"
	"strings"
	"testing"
)

func BenchmarkMatch(b *testing.B) {
	b.Run("Match", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Match("device:*:temp", "device:42:temp")
		}
	})
	b.Run("compiled", func(b *testing.B) {
		p, err := compilePattern("device:*:temp")
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			p.match("device:42:temp", "")
		}
	})
	b.Run("allowJoin", func(b *testing.B) {
		cp := mustCompile(b, productPolicy())
		id := &Identity{Subject: "alice", Roles: []string{"staff", "admin"}}
		b.ReportAllocs()
		for b.Loop() {
			cp.allowJoin(id, "user:alice")
		}
	})
}

// naiveMatch is a reference matcher built on strings.Split, for the fuzz test.
func naiveMatch(pattern, room string) bool {
	if ValidPattern(pattern) != nil || ValidRoom(room) != nil {
		return false
	}
	ps, rs := strings.Split(pattern, ":"), strings.Split(room, ":")
	for i, p := range ps {
		if p == "**" {
			return len(rs) > i
		}
		if i >= len(rs) || p == "{sub}" || (p != "*" && p != rs[i]) {
			return false
		}
	}
	return len(ps) == len(rs)
}

func FuzzMatchPattern(f *testing.F) {
	for _, tt := range matchTests {
		f.Add(tt.pattern, tt.room)
	}
	for _, tt := range patternTests {
		f.Add(tt.pattern, "device:42:temp")
	}
	for _, tt := range validRoomTests {
		f.Add("**", tt.room)
	}
	f.Fuzz(func(t *testing.T, pattern, room string) {
		got := Match(pattern, room)
		if got {
			if err := ValidPattern(pattern); err != nil {
				t.Fatalf("Match(%q, %q) = true but ValidPattern: %v", pattern, room, err)
			}
			if err := ValidRoom(room); err != nil {
				t.Fatalf("Match(%q, %q) = true but ValidRoom: %v", pattern, room, err)
			}
		}
		if want := naiveMatch(pattern, room); got != want {
			t.Fatalf("Match(%q, %q) = %v, reference matcher says %v", pattern, room, got, want)
		}
		for _, s := range []string{pattern, room} {
			if ValidRoom(s) == nil {
				if !Match(s, s) {
					t.Fatalf("Match(%q, %q) = false for a valid room", s, s)
				}
				if ValidPattern(s) != nil {
					t.Fatalf("valid room %q is not a valid pattern", s)
				}
			}
		}
		// Errors wrap ErrBadRoom and echo at most 64 bytes of input.
		for _, err := range []error{ValidRoom(room), ValidPattern(pattern)} {
			if err == nil {
				continue
			}
			if !errors.Is(err, ErrBadRoom) {
				t.Fatalf("error %v does not wrap ErrBadRoom", err)
			}
			if len(err.Error()) > 400 {
				t.Fatalf("error message too long (%d bytes): %q", len(err.Error()), err)
			}
		}
		// The compiled form agrees, and {sub} with a subject equals literal substitution.
		cp, err := compilePattern(pattern)
		if (err == nil) != (ValidPattern(pattern) == nil) {
			t.Fatalf("compilePattern(%q) error %v disagrees with ValidPattern", pattern, err)
		}
		if err == nil && ValidRoom(room) == nil {
			if cp.match(room, "") != got {
				t.Fatalf("compiled %q match %q disagrees with Match", pattern, room)
			}
			const sub = "alice"
			parts := strings.Split(pattern, ":")
			for i := range parts {
				if parts[i] == "{sub}" {
					parts[i] = sub
				}
			}
			lit := strings.Join(parts, ":")
			if len(lit) <= MaxRoomLen && cp.match(room, sub) != Match(lit, room) {
				t.Fatalf("%q with sub=%q match %q = %v, but Match(%q) = %v", pattern, sub, room, cp.match(room, sub), lit, Match(lit, room))
			}
		}
	})
}
