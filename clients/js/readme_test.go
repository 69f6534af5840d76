package js_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/org/rthub/internal/doccheck"
)

var (
	tsMarkerRE = regexp.MustCompile(`^<!--\s*ts:\s*(\S+)#(\w+)\s*-->$`)
	regionRE   = regexp.MustCompile(`(?ms)^// region: (\w+)\n(.*?)^// endregion\n`)
)

// TestReadme checks the TypeScript blocks of README.md (internal/doccheck
// checks its Go and shell blocks): each is preceded by a line
// <!-- ts: FILE#NAME --> and is exactly the region NAME of FILE (a path
// from this directory) between "// region: NAME" and "// endregion", a
// file TestTypes type-checks.
func TestReadme(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(readme), "\n")
	n := 0
	for _, b := range doccheck.CodeBlocks(t, "clients/js/README.md") {
		if b.Lang != "ts" && b.Lang != "typescript" && b.Lang != "tsx" {
			continue
		}
		n++
		m := tsMarkerRE.FindStringSubmatch(strings.TrimSpace(lines[b.Line-2]))
		if m == nil {
			t.Errorf("README.md:%d: a TypeScript block without a <!-- ts: FILE#REGION --> line before it", b.Line)
			continue
		}
		src, err := os.ReadFile(filepath.FromSlash(m[1]))
		if err != nil {
			t.Errorf("README.md:%d: %v", b.Line, err)
			continue
		}
		var region string
		found := false
		for _, r := range regionRE.FindAllStringSubmatch(string(src), -1) {
			if r[1] == m[2] {
				region, found = r[2], true
			}
		}
		if !found {
			t.Errorf("README.md:%d: %s has no region %q", b.Line, m[1], m[2])
			continue
		}
		if got := strings.Join(b.Lines, "\n") + "\n"; got != region {
			t.Errorf("README.md:%d differs from %s#%s; copy the region:\n%s", b.Line, m[1], m[2], region)
		}
	}
	if n == 0 {
		t.Fatal("README.md has no TypeScript block: the pattern no longer reads it")
	}
	if !strings.Contains(string(readme), "test/readme.example.ts") {
		t.Fatal("README.md names no example file")
	}
}
