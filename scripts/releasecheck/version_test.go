package main

import "testing"

func TestAllowsIncompatible(t *testing.T) {
	t.Parallel()
	tests := []struct {
		base, cur string
		want      bool
	}{
		{"v0.1.0", "v0.1.0", false},
		{"v0.1.0", "v0.1.1", false},
		{"v0.1.0", "v0.2.0-rc.1", true},
		{"v0.1.0", "v0.2.0", true},
		{"v0.1.3", "v0.2.0", true},
		{"v0.1.0", "v1.0.0", true},
		{"v0.2.0", "v0.1.9", false},
		{"v1.0.0", "v1.1.0", false},
		{"v1.2.0", "v1.9.9", false},
		{"v1.2.0", "v2.0.0-rc.1", true},
		{"v1.2.0", "v2.0.0", true},
	}
	for _, tt := range tests {
		if got := allowsIncompatible(tt.base, tt.cur); got != tt.want {
			t.Errorf("allowsIncompatible(%s, %s) = %v, want %v", tt.base, tt.cur, got, tt.want)
		}
	}
}

func TestNextVersions(t *testing.T) {
	t.Parallel()
	tests := []struct{ base, incompatible, compatible string }{
		{"v0.1.0", "v0.2.0", "v0.2.0"},
		{"v0.1.4", "v0.2.0", "v0.2.0"},
		{"v1.3.2", "v2.0.0", "v1.4.0"},
	}
	for _, tt := range tests {
		if got := nextIncompatible(tt.base); got != tt.incompatible {
			t.Errorf("nextIncompatible(%s) = %s, want %s", tt.base, got, tt.incompatible)
		}
		if got := nextCompatible(tt.base); got != tt.compatible {
			t.Errorf("nextCompatible(%s) = %s, want %s", tt.base, got, tt.compatible)
		}
	}
}

func TestParseVersion(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"v0.1.0\n", "v1.2.3", "v0.2.0-rc.1\n"} {
		if _, err := parseVersion([]byte(ok)); err != nil {
			t.Errorf("parseVersion(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "0.1.0", "v0.1", "v0.1.0+meta", "v0.1.0\nv0.2.0", "latest"} {
		if _, err := parseVersion([]byte(bad)); err == nil {
			t.Errorf("parseVersion(%q) accepted", bad)
		}
	}
}
