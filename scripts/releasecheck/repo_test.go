package main

import (
	"archive/zip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestAPIBase(t *testing.T) {
	t.Parallel()
	rels := []release{ // newest first, as git log gives them
		{"c5", "v0.3.0-rc.1"},
		{"c4", "v0.2.0"},
		{"c3", "v0.2.0-rc.1"},
		{"c1", "v0.1.0"},
	}
	tests := []struct {
		name      string
		rels      []release
		head, cur string
		want      string
		ok        bool
	}{
		{"no release yet", []release{{"c0", "v0.1.0-rc.1"}}, "c0", "v0.1.0-rc.1", "", false},
		{"first release commit judged against itself", rels[3:], "c1", "v0.1.0", "c1", true},
		{"after the first release", rels[3:], "c2", "v0.1.0", "c1", true},
		{"release commit judged against the release before", rels[1:], "c4", "v0.2.0", "c1", true},
		{"after a release", rels[1:], "c9", "v0.2.0", "c4", true},
		{"pre-release after a release", rels, "c5", "v0.3.0-rc.1", "c4", true},
		{"uncommitted bump", rels[1:], "c4", "v0.3.0", "c4", true},
	}
	for _, tt := range tests {
		got, ok := apiBase(tt.rels, tt.head, tt.cur)
		if ok != tt.ok || got.Commit != tt.want {
			t.Errorf("%s: apiBase = %v, %v; want %s, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// TestProxyFromHistory builds a repository with a root and a nested library
// module and two releases, and checks that a proxy serves each required
// version from its own release commit, the nested module zipped without the
// root's files and the root without the nested module's.
func TestProxyFromHistory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	write := func(name, content string) {
		t.Helper()
		if err := writeFile(filepath.Join(dir, name), strings.NewReader(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q")
	write("go.work", "go 1.26.0\n\nuse (\n\t.\n\t./sub\n\t./examples\n)\n")
	write("go.mod", "module example.com/m\n\ngo 1.26.0\n")
	write("m.go", "package m\n\nconst V = 1\n")
	write("sub/go.mod", "module example.com/m/sub\n\ngo 1.26.0\n\nrequire example.com/m v0.1.0\n")
	write("sub/sub.go", "package sub\n")
	write("examples/go.mod", "module example.com/m/examples\n\ngo 1.26.0\n\nrequire example.com/m v0.1.0\n\nreplace example.com/m => ../\n")
	write("VERSION", "v0.1.0\n")
	git("add", ".")
	git("commit", "-q", "-m", "release v0.1.0")
	write("m.go", "package m\n\nconst V = 2\n")
	git("commit", "-q", "-am", "after v0.1.0")

	r, err := openRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "proxy")
	b, err := newProxyBuilder(r, out, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.addRequired(); err != nil {
		t.Fatal(err)
	}
	written, err := b.build()
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 1 || written[0].String() != "example.com/m@v0.1.0" {
		t.Fatalf("written %v, want only example.com/m@v0.1.0 (the examples' replace is local)", written)
	}
	files := zipFiles(t, filepath.Join(out, "example.com/m/@v/v0.1.0.zip"))
	if !slices.Contains(files, "example.com/m@v0.1.0/m.go") || slices.ContainsFunc(files, func(f string) bool { return strings.Contains(f, "sub/") || strings.Contains(f, "examples/") }) {
		t.Errorf("root zip holds %v", files)
	}
	if got := readZipFile(t, filepath.Join(out, "example.com/m/@v/v0.1.0.zip"), "example.com/m@v0.1.0/m.go"); !strings.Contains(got, "V = 1") {
		t.Errorf("v0.1.0 zipped from the wrong tree: m.go is %q, want the release commit's", got)
	}

	// The working tree: every library at VERSION, from the files as they are.
	out2 := filepath.Join(t.TempDir(), "proxy")
	b, err = newProxyBuilder(r, out2, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.addWorktree(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.build(); err != nil {
		t.Fatal(err)
	}
	if got := readZipFile(t, filepath.Join(out2, "example.com/m/@v/v0.1.0.zip"), "example.com/m@v0.1.0/m.go"); !strings.Contains(got, "V = 2") {
		t.Errorf("worktree zip: m.go is %q, want the working tree's", got)
	}
	sub := zipFiles(t, filepath.Join(out2, "example.com/m/sub/@v/v0.1.0.zip"))
	if want := []string{"example.com/m/sub@v0.1.0/go.mod", "example.com/m/sub@v0.1.0/sub.go"}; !slices.Equal(sub, want) {
		t.Errorf("nested zip holds %v, want %v", sub, want)
	}
	for _, f := range []string{"example.com/m/@v/list", "example.com/m/@v/v0.1.0.info", "example.com/m/@v/v0.1.0.mod", "example.com/m/sub/@v/list"} {
		if _, err := os.Stat(filepath.Join(out2, f)); err != nil {
			t.Errorf("proxy file: %v", err)
		}
	}

	// A required version that was never released is an error.
	write("sub/go.mod", "module example.com/m/sub\n\ngo 1.26.0\n\nrequire example.com/m v0.2.0\n")
	b, err = newProxyBuilder(r, filepath.Join(t.TempDir(), "proxy"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.addRequired(); err == nil || !strings.Contains(err.Error(), "v0.2.0") {
		t.Errorf("requiring an unreleased version: err = %v", err)
	}
}

func zipFiles(t *testing.T, name string) []string {
	t.Helper()
	zr, err := zip.OpenReader(name)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var files []string
	for _, f := range zr.File {
		files = append(files, f.Name)
	}
	slices.Sort(files)
	return files
}

func readZipFile(t *testing.T, name, file string) string {
	t.Helper()
	zr, err := zip.OpenReader(name)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	f, err := zr.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
