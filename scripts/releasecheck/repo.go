package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// repo is the git checkout the tool works on: its top-level directory.
type repo struct {
	root string
}

// library is one library module of a tree: its directory relative to the
// tree's root ("." for the root module) and its module path.
type library struct {
	Dir  string
	Path string
}

// release is a commit that changed VERSION, and the version it set.
type release struct {
	Commit  string
	Version string
}

// errNoVersionFile is returned when a tree has no VERSION file.
var errNoVersionFile = errors.New("no VERSION file")

func openRepo(dir string) (*repo, error) {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return nil, fmt.Errorf("%s is not in a git checkout: %w", dir, err)
	}
	return &repo{root: strings.TrimSpace(string(out))}, nil
}

// git runs git in the repository and returns its standard output.
func (r *repo) git(args ...string) ([]byte, error) {
	cmd := exec.Command("git", append([]string{"-C", r.root}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// parseVersion checks the content of a VERSION file: one canonical semantic
// version with its "v" (v0.1.0, v0.2.0-rc.1), nothing else.
func parseVersion(content []byte) (string, error) {
	v := strings.TrimSpace(string(content))
	if !semver.IsValid(v) || semver.Canonical(v) != v || semver.Build(v) != "" {
		return "", fmt.Errorf("VERSION holds %q: want one version like v0.1.0 (vMAJOR.MINOR.PATCH, optionally -prerelease)", v)
	}
	return v, nil
}

// worktreeVersion reads VERSION from the working tree.
func (r *repo) worktreeVersion() (string, error) {
	b, err := os.ReadFile(filepath.Join(r.root, "VERSION"))
	if errors.Is(err, os.ErrNotExist) {
		return "", errNoVersionFile
	}
	if err != nil {
		return "", err
	}
	return parseVersion(b)
}

// versionAt reads VERSION at a commit; errNoVersionFile if it has none.
func (r *repo) versionAt(commit string) (string, error) {
	out, err := exec.Command("git", "-C", r.root, "show", commit+":VERSION").Output()
	if err != nil {
		return "", errNoVersionFile
	}
	return parseVersion(out)
}

// head returns the commit HEAD names.
func (r *repo) head() (string, error) {
	out, err := r.git("rev-parse", "HEAD")
	return strings.TrimSpace(string(out)), err
}

// releases lists the commits that changed VERSION, newest first, each with
// the version it set (commits that deleted it are left out). The commit that
// set VERSION to a version is that version's release commit: the tree the
// tags point to. It is found from the history alone, so it needs no tags;
// a shallow clone that lacks the commit fails here.
func (r *repo) releases() ([]release, error) {
	if out, err := r.git("rev-parse", "--is-shallow-repository"); err == nil && strings.TrimSpace(string(out)) == "true" {
		return nil, errors.New("the clone is shallow: the release commits are found in VERSION's history (git fetch --unshallow)")
	}
	out, err := r.git("log", "--format=%H", "--", "VERSION")
	if err != nil {
		return nil, err
	}
	var rs []release
	for _, c := range strings.Fields(string(out)) {
		v, err := r.versionAt(c)
		if errors.Is(err, errNoVersionFile) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("commit %s: %w", c, err)
		}
		rs = append(rs, release{Commit: c, Version: v})
	}
	return rs, nil
}

// releaseCommit returns the newest commit that set VERSION to v.
func releaseCommit(rs []release, v string) (string, bool) {
	for _, r := range rs {
		if r.Version == v {
			return r.Commit, true
		}
	}
	return "", false
}

// libraries lists the library modules of the tree at dir: every module its
// go.work uses, except those under examples/ (programs, never released).
func libraries(dir string) ([]library, error) {
	b, err := os.ReadFile(filepath.Join(dir, "go.work"))
	if err != nil {
		return nil, err
	}
	wf, err := modfile.ParseWork("go.work", b, nil)
	if err != nil {
		return nil, err
	}
	var libs []library
	for _, u := range wf.Use {
		d := path.Clean(filepath.ToSlash(u.Path))
		if d == "examples" || strings.HasPrefix(d, "examples/") {
			continue
		}
		mf, err := readModFile(filepath.Join(dir, d, "go.mod"))
		if err != nil {
			return nil, err
		}
		libs = append(libs, library{Dir: d, Path: mf.Module.Mod.Path})
	}
	if len(libs) == 0 || libs[0].Dir != "." {
		return nil, fmt.Errorf("%s/go.work: the root module must come first in use", dir)
	}
	return libs, nil
}

// workModules lists the directories of every module go.work uses.
func workModules(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "go.work"))
	if err != nil {
		return nil, err
	}
	wf, err := modfile.ParseWork("go.work", b, nil)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, u := range wf.Use {
		dirs = append(dirs, path.Clean(filepath.ToSlash(u.Path)))
	}
	return dirs, nil
}

func readModFile(file string) (*modfile.File, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return modfile.Parse(file, b, nil)
}

// extractCommit writes the tree of commit into dir, as git archive gives it
// (the files a module proxy would zip from a tag).
func (r *repo) extractCommit(commit, dir string) error {
	cmd := exec.Command("git", "-C", r.root, "archive", "--format=tar", commit)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	terr := untar(out, dir)
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git archive %s: %w: %s", commit, err, strings.TrimSpace(stderr.String()))
	}
	return terr
}

func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue // directories are made as needed; links are not module content
		}
		name := filepath.FromSlash(path.Clean(h.Name))
		if !filepath.IsLocal(name) {
			return fmt.Errorf("archive entry %q leaves the tree", h.Name)
		}
		if err := writeFile(filepath.Join(dir, name), tr, os.FileMode(h.Mode)&0o777); err != nil {
			return err
		}
	}
}

// extractWorktree copies the files git tracks, as they are in the working
// tree (uncommitted edits included, untracked and ignored files not), into
// dir: what the next commit would release.
func (r *repo) extractWorktree(dir string) error {
	out, err := r.git("ls-files", "-z", "--cached")
	if err != nil {
		return err
	}
	for _, name := range strings.Split(string(out), "\x00") {
		if name == "" {
			continue
		}
		src := filepath.Join(r.root, filepath.FromSlash(name))
		fi, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted, not yet committed
		}
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		err = writeFile(filepath.Join(dir, filepath.FromSlash(name)), f, fi.Mode().Perm())
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func writeFile(name string, r io.Reader, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
