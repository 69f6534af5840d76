package main

import (
	"errors"
	"flag"
	"os"
	"testing"

	"github.com/org/rthub/internal/doccheck"
)

// TestDocs_commands: every documented `go run ./examples/drill/cmd/drill`
// (docs/scaling.md, docs/onboarding.md; also written `go run ./cmd/drill`
// after cd examples/drill) parses: known flags and a known command. The
// drills themselves run in go test at CI size (TestDrill* in examples/drill),
// the benchmark in TestBenchSmoke.
func TestDocs_commands(t *testing.T) {
	cmds := doccheck.GoRuns(t, "examples/drill/cmd/drill")
	for _, c := range cmds {
		if _, err := parseArgs(c.Args); err != nil {
			t.Errorf("%s:%d: %s: %v", c.File, c.Line, c, err)
		}
		if len(c.Assigned) > 0 {
			t.Errorf("%s:%d: %s sets %v, which the drill command does not read", c.File, c.Line, c, c.Assigned)
		}
	}
	t.Logf("%d documented drill commands", len(cmds))
}

func TestParseArgs(t *testing.T) {
	stderr := os.Stderr
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	os.Stderr = null // the usage text
	defer func() { os.Stderr = stderr }()
	tests := []struct {
		name    string
		args    []string
		wantCmd string
		wantErr bool
	}{
		{"all", []string{"all"}, "all", false},
		{"flagsAfter", []string{"kill9", "-clients", "10"}, "kill9", false},
		{"flagsBefore", []string{"-clients", "5000", "-phase", "20s", "all"}, "all", false},
		{"bench", []string{"bench", "-nodes", "5", "-conns", "19000"}, "bench", false},
		{"noCommand", nil, "", true},
		{"unknownCommand", []string{"kill8"}, "", true},
		{"twoCommands", []string{"kill9", "blip"}, "", true},
		{"unknownFlag", []string{"-client", "5", "all"}, "", true},
		{"badDuration", []string{"-phase", "soon", "all"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseArgs(tt.args)
			if (err != nil) != tt.wantErr || (err == nil && o.cmd != tt.wantCmd) {
				t.Errorf("parseArgs(%q) = %q, %v", tt.args, o.cmd, err)
			}
		})
	}
	if _, err := parseArgs([]string{"-help"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-help: %v, want flag.ErrHelp", err)
	}
}
