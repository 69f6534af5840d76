package rthub

import (
	"errors"
	"strings"
	"testing"
)

// validRoomTests are the ValidRoom cases; they also seed FuzzMatchPattern.
var validRoomTests = []struct {
	name string
	room string
	ok   bool
	msg  string // substring of the error message when !ok
}{
	{"single", "staff", true, ""},
	{"oneChar", "a", true, ""},
	{"segments", "device:42:temp", true, ""},
	{"allChars", "AZaz09_-.@/:x", true, ""},
	{"email", "user:alice@example.com", true, ""},
	{"path", "files:/a/b", true, ""},
	{"max", strings.Repeat("a", 128), true, ""},
	{"maxSegments", strings.Repeat("a:", 63) + "ab", true, ""},
	{"maxSegmentsShort", strings.Repeat("a:", 63) + "a", true, ""},
	{"empty", "", false, "empty"},
	{"tooLong", strings.Repeat("a", 129), false, "longer than 128 bytes"},
	{"space", "dev ice", false, "illegal character ' ' at offset 3"},
	{"unicode", "café", false, "illegal byte 0xc3 at offset 3"},
	{"doubleColon", "a::b", false, "empty segment '::' at offset 2"},
	{"leadingColon", ":a", false, "leading ':'"},
	{"trailingColon", "device:", false, "trailing ':'"},
	{"onlyColon", ":", false, "leading ':'"},
	{"star", "*", false, "illegal character '*' at offset 0"},
	{"starSegment", "device:*", false, "illegal character '*'"},
	{"brace", "user:{sub}", false, "illegal character '{'"},
	{"closeBrace", "a}", false, "illegal character '}'"},
	{"nul", "a\x00b", false, "illegal byte 0x00 at offset 1"},
	{"newline", "a\n", false, "illegal byte 0x0a"},
	{"del", "a\x7f", false, "illegal byte 0x7f"},
	{"tab", "\ta", false, "illegal byte 0x09"},
	{"hash", "room#1", false, "illegal character '#'"},
	{"comma", "a,b", false, "illegal character ','"},
	{"highByte", "a\xff", false, "illegal byte 0xff"},
}

func TestValidRoom(t *testing.T) {
	t.Parallel()
	for _, tt := range validRoomTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidRoom(tt.room)
			if tt.ok {
				if err != nil {
					t.Fatalf("ValidRoom(%q) = %v, want nil", tt.room, err)
				}
				return
			}
			if !errors.Is(err, ErrBadRoom) {
				t.Fatalf("ValidRoom(%q) = %v, want error wrapping ErrBadRoom", tt.room, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("ValidRoom(%q) = %q, want it to contain %q", tt.room, err, tt.msg)
			}
		})
	}
}

func TestValidRoom_errorEchoesAtMost64Bytes(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 64) + strings.Repeat("Q", 1000)
	err := ValidRoom(long)
	if !errors.Is(err, ErrBadRoom) {
		t.Fatalf("ValidRoom(long) = %v, want ErrBadRoom", err)
	}
	if strings.Contains(err.Error(), "Q") {
		t.Errorf("error echoes more than 64 bytes: %q", err)
	}
	if !strings.Contains(err.Error(), "(1064 bytes)") {
		t.Errorf("error %q does not give the length", err)
	}
	err = ValidPattern(strings.Repeat("x", 64) + strings.Repeat("Q", 100))
	if !errors.Is(err, ErrBadRoom) || strings.Contains(err.Error(), "Q") {
		t.Errorf("ValidPattern(long) = %q, want ErrBadRoom echoing at most 64 bytes", err)
	}
}

// patternTests are the ValidPattern cases; they also seed FuzzMatchPattern.
var patternTests = []struct {
	name    string
	pattern string
	ok      bool
	msg     string // substring of the error message when !ok
}{
	{"literal", "staff", true, ""},
	{"literalSegments", "device:42:temp", true, ""},
	{"star", "*", true, ""},
	{"starLast", "device:*", true, ""},
	{"starMiddle", "device:*:temp", true, ""},
	{"starStar", "*:*", true, ""},
	{"dstarOnly", "**", true, ""},
	{"dstarLast", "device:**", true, ""},
	{"starThenDstar", "*:**", true, ""},
	{"sub", "user:{sub}", true, ""},
	{"subOnly", "{sub}", true, ""},
	{"subMiddle", "user:{sub}:inbox", true, ""},
	{"subTwice", "{sub}:{sub}", true, ""},
	{"max", strings.Repeat("a", 128), true, ""},
	{"maxSegments", strings.Repeat("*:", 63) + "**", true, ""},
	{"empty", "", false, "empty"},
	{"tooLong", strings.Repeat("a", 129), false, "longer than 128 bytes"},
	{"dstarMiddle", "device:**:temp", false, "'**' is allowed only as the last segment at offset 7"},
	{"dstarFirst", "**:x", false, "only as the last segment"},
	{"tripleStar", "a:***", false, "'*' or '**' must be a whole segment"},
	{"starInLiteral", "dev*", false, "'*' or '**' must be a whole segment at offset 3"},
	{"starPrefix", "device:*42", false, "must be a whole segment"},
	{"subInLiteral", "user{sub}", false, "the only placeholder is '{sub}'"},
	{"otherPlaceholder", "user:{user}", false, "the only placeholder is '{sub}'"},
	{"unclosedPlaceholder", "user:{sub", false, "the only placeholder"},
	{"leadingColon", ":a", false, "leading ':'"},
	{"trailingColon", "device:", false, "trailing ':'"},
	{"trailingColonAfterStar", "*:", false, "trailing ':'"},
	{"doubleColon", "a::*", false, "empty segment '::'"},
	{"space", "a b", false, "illegal character ' '"},
	{"unicode", "é", false, "illegal byte 0xc3"},
	{"control", "a:\x01", false, "illegal byte 0x01"},
}

func TestValidPattern(t *testing.T) {
	t.Parallel()
	for _, tt := range patternTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidPattern(tt.pattern)
			if tt.ok {
				if err != nil {
					t.Fatalf("ValidPattern(%q) = %v, want nil", tt.pattern, err)
				}
				return
			}
			if !errors.Is(err, ErrBadRoom) {
				t.Fatalf("ValidPattern(%q) = %v, want error wrapping ErrBadRoom", tt.pattern, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("ValidPattern(%q) = %q, want it to contain %q", tt.pattern, err, tt.msg)
			}
		})
	}
}

// matchTests are the Match cases; they also seed FuzzMatchPattern.
var matchTests = []struct {
	pattern, room string
	want          bool
}{
	{"device:*", "device:42", true},
	{"device:*", "device", false},
	{"device:*", "device:42:temp", false},
	{"device:*", "devices:42", false},
	{"device:**", "device:42", true},
	{"device:**", "device:42:temp", true},
	{"device:**", "device", false},
	{"device:**", "other:42", false},
	{"*", "staff", true},
	{"*", "device:42", false},
	{"**", "staff", true},
	{"**", "a:b:c", true},
	{"*:**", "a", false},
	{"*:**", "a:b", true},
	{"*:temp", "device:temp", true},
	{"*:temp", "device:hum", false},
	{"device:*:temp", "device:42:temp", true},
	{"device:*:temp", "device:42:hum", false},
	{"staff", "staff", true},
	{"staff", "Staff", false},
	{"staff", "staff:x", false},
	{"staff:x", "staff", false},
	{"a:b", "a:b", true},
	{"a:b", "a:bc", false},
	{"a:bc", "a:b", false},
	// {sub} never matches through Match.
	{"user:{sub}", "user:alice", false},
	{"user:{sub}", "user:{sub}", false},
	{"{sub}", "alice", false},
	// Invalid pattern or room: false.
	{"device:**:temp", "device:1:temp", false},
	{"dev*", "dev*", false},
	{"dev*", "devx", false},
	{"", "", false},
	{"*", "", false},
	{"**", "", false},
	{"*", "a b", false},
	{"a:*", "a:", false},
	{"**", ":a", false},
	{"a::b", "a::b", false},
	{"*", strings.Repeat("a", 129), false},
	{strings.Repeat("*:", 63) + "*", strings.Repeat("a:", 63) + "a", true},
	{strings.Repeat("*:", 63) + "**", strings.Repeat("a:", 63) + "a", true},
	{strings.Repeat("*:", 63) + "**", strings.Repeat("a:", 62) + "a", false},
	{strings.Repeat("*:", 62) + "**", strings.Repeat("a:", 63) + "a", true},
}

func TestMatch(t *testing.T) {
	t.Parallel()
	for i, tt := range matchTests {
		if got := Match(tt.pattern, tt.room); got != tt.want {
			t.Errorf("%d: Match(%q, %q) = %v, want %v", i, tt.pattern, tt.room, got, tt.want)
		}
		// The compiled form agrees (without a subject).
		if p, err := compilePattern(tt.pattern); err == nil && ValidRoom(tt.room) == nil {
			if got := p.match(tt.room, ""); got != tt.want {
				t.Errorf("%d: compiled %q match %q = %v, want %v", i, tt.pattern, tt.room, got, tt.want)
			}
		}
	}
}

func TestPattern_matchSub(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, room, sub string
		want               bool
	}{
		{"user:{sub}", "user:alice", "alice", true},
		{"user:{sub}", "user:bob", "alice", false},
		{"user:{sub}", "user:alice", "", false},
		{"user:{sub}", "user:alice:x", "alice", false},
		{"user:{sub}", "user:org:alice", "org:alice", false}, // a subject with ':' never matches
		{"user:{sub}:**", "user:alice:inbox:1", "alice", true},
		{"{sub}:{sub}", "alice:alice", "alice", true},
		{"{sub}:{sub}", "alice:bob", "alice", false},
		{"*:{sub}", "team:alice", "alice", true},
		{"user:{sub}", "user:al ice", "al ice", false}, // invalid room never matches
	}
	for i, tt := range tests {
		p, err := compilePattern(tt.pattern)
		if err != nil {
			t.Fatalf("%d: compilePattern(%q): %v", i, tt.pattern, err)
		}
		got := ValidRoom(tt.room) == nil && p.match(tt.room, tt.sub)
		if got != tt.want {
			t.Errorf("%d: %q.match(%q, sub=%q) = %v, want %v", i, tt.pattern, tt.room, tt.sub, got, tt.want)
		}
	}
}
