// Command releasecheck is the Go half of scripts/release-check: it builds
// file-based module proxies of rthub's library modules from the repository,
// checks their go.mod files, and compares their exported API with the last
// release. It is its own module, outside go.work, so that golang.org/x/mod,
// x/exp and x/tools never enter the library modules' graphs.
//
// Usage (from anywhere in the checkout; scripts/release-check runs these):
//
//	releasecheck libraries            print the library modules' paths
//	releasecheck workmodules          print the directories of go.work's modules
//	releasecheck modules              check the library go.mod files
//	releasecheck lockstep             make every module of go.work require the
//	                                  library modules at VERSION (release
//	                                  preparation)
//	releasecheck proxy -o DIR         proxy of the versions of our modules that
//	                                  the workspace's go.mod files require, each
//	                                  zipped from its release commit
//	releasecheck proxy -worktree -o DIR
//	                                  the same, plus every library module at
//	                                  VERSION zipped from the working tree
//	releasecheck api                  API compatibility with the last release
//
// A version's release commit is the newest commit that set VERSION to it
// (docs/releasing.md).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/semver"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "releasecheck:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: releasecheck libraries|modules|lockstep|proxy [-worktree] -o DIR|api")
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	r, err := openRepo(wd)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "releasecheck-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	switch args[0] {
	case "workmodules":
		dirs, err := workModules(r.root)
		if err != nil {
			return err
		}
		for _, d := range dirs {
			fmt.Println(d)
		}
		return nil
	case "libraries":
		libs, err := libraries(r.root)
		if err != nil {
			return err
		}
		for _, l := range libs {
			fmt.Println(l.Path)
		}
		return nil
	case "modules":
		return checkModules(r)
	case "lockstep":
		return lockstep(r)
	case "proxy":
		fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
		out := fs.String("o", "", "the proxy's directory (created)")
		worktree := fs.Bool("worktree", false, "also every library module at VERSION from the working tree")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *out == "" {
			return errors.New("proxy: -o DIR is required")
		}
		dir, err := filepath.Abs(*out)
		if err != nil {
			return err
		}
		b, err := newProxyBuilder(r, dir, tmp)
		if err != nil {
			return err
		}
		if *worktree {
			if err := b.addWorktree(); err != nil {
				return err
			}
		}
		if err := b.addRequired(); err != nil {
			return err
		}
		written, err := b.build()
		if err != nil {
			return err
		}
		for _, m := range written {
			src := b.done[m]
			from := "the working tree"
			if src != worktreeSource {
				from = "release commit " + src[:12]
			}
			fmt.Fprintf(os.Stderr, "proxy: %s from %s\n", m, from)
		}
		return nil
	case "api":
		return apiCheck(r, tmp, os.Stdout)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// checkModules checks what makes the library modules installable with go
// get: no replace directive (go get ignores them), and, in a tree at a
// release version, every library requiring its siblings at that version
// (they are released together). From v2 on, module paths end in /vN.
func checkModules(r *repo) error {
	v, err := r.worktreeVersion()
	if err != nil {
		return err
	}
	libs, err := libraries(r.root)
	if err != nil {
		return err
	}
	ours := map[string]bool{}
	for _, l := range libs {
		ours[l.Path] = true
	}
	var problems []string
	for _, l := range libs {
		mf, err := readModFile(filepath.Join(r.root, l.Dir, "go.mod"))
		if err != nil {
			return err
		}
		for _, rep := range mf.Replace {
			problems = append(problems, fmt.Sprintf("%s/go.mod: replace %s: a library module may not replace (development uses go.work)", l.Dir, rep.Old.Path))
		}
		for _, req := range mf.Require {
			if !ours[req.Mod.Path] {
				continue
			}
			if semver.Prerelease(v) == "" && req.Mod.Version != v {
				problems = append(problems, fmt.Sprintf("%s/go.mod: requires %s, want %s (VERSION): library modules are released together", l.Dir, req.Mod, v))
			}
		}
		if m := semver.Major(v); m != "v0" && m != "v1" && !strings.HasSuffix(l.Path, "/"+m) {
			problems = append(problems, fmt.Sprintf("%s/go.mod: module %s at %s must end in /%s", l.Dir, l.Path, v, m))
		}
	}
	if len(problems) > 0 {
		return errors.New("library go.mod files:\n  " + strings.Join(problems, "\n  "))
	}
	fmt.Printf("modules: %d library modules at %s, no replace, siblings required at released versions\n", len(libs), v)
	return nil
}

// lockstep rewrites the go.mod files of every module of go.work so that
// each requires the library modules at VERSION: the libraries (released
// together) and the example programs (whose replace directives point at
// this tree, but whose go.mod must still name the version the libraries
// require, or go mod tidy raises it). It drops the go.sum lines of the
// library modules, which go mod tidy then writes for the version being
// prepared (a stale hash of the same version would be a checksum mismatch).
func lockstep(r *repo) error {
	v, err := r.worktreeVersion()
	if err != nil {
		return err
	}
	libs, err := libraries(r.root)
	if err != nil {
		return err
	}
	ours := map[string]bool{}
	for _, l := range libs {
		ours[l.Path] = true
	}
	dirs, err := workModules(r.root)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		file := filepath.Join(r.root, d, "go.mod")
		mf, err := readModFile(file)
		if err != nil {
			return err
		}
		if err := dropSums(filepath.Join(r.root, d, "go.sum"), ours); err != nil {
			return err
		}
		changed := false
		for _, req := range mf.Require {
			if ours[req.Mod.Path] && req.Mod.Version != v {
				if err := mf.AddRequire(req.Mod.Path, v); err != nil {
					return err
				}
				changed = true
			}
		}
		if !changed {
			continue
		}
		mf.Cleanup()
		b, err := mf.Format()
		if err != nil {
			return err
		}
		if err := os.WriteFile(file, b, 0o644); err != nil {
			return err
		}
		fmt.Printf("lockstep: %s/go.mod requires the library modules at %s\n", d, v)
	}
	return nil
}

// dropSums removes the lines of the given modules from a go.sum file.
func dropSums(file string, paths map[string]bool) error {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var keep []string
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && paths[f[0]] {
			continue
		}
		keep = append(keep, line)
	}
	if out := strings.Join(keep, ""); out != string(b) {
		return os.WriteFile(file, []byte(out), 0o644)
	}
	return nil
}
