package testenv

import (
	"fmt"
	"testing"
)

type fakeTB struct{ skipped, failed string }

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestURL(t *testing.T) {
	tests := []struct {
		name, value, require string
		wantSkip, wantFail   bool
	}{
		{"unset skips", "", "", true, false},
		{"unset fails when required", "", "1", false, true},
		{"unreachable skips", "redis://127.0.0.1:1/0", "", true, false},
		{"unreachable fails when required", "redis://127.0.0.1:1/0", "1", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("RTHUB_TESTENV_PROBE", tt.value)
			t.Setenv(Require, tt.require)
			var f fakeTB
			URL(&f, "RTHUB_TESTENV_PROBE")
			if (f.skipped != "") != tt.wantSkip || (f.failed != "") != tt.wantFail {
				t.Fatalf("skipped=%q failed=%q", f.skipped, f.failed)
			}
		})
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"redis://127.0.0.1:6379/0":           "127.0.0.1:6379",
		"redis://localhost/0":                "localhost:6379",
		"postgres://postgres@127.0.0.1/test": "127.0.0.1:5432",
		"tcp://127.0.0.1:1883":               "127.0.0.1:1883",
		"nats://[::1]":                       "[::1]:4222",
		"unknown://x":                        "",
		"::::":                               "",
	} {
		if got := hostPort(in); got != want {
			t.Errorf("hostPort(%q) = %q, want %q", in, got, want)
		}
	}
}
