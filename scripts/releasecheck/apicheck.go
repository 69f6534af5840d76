package main

import (
	"errors"
	"fmt"
	"go/types"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/exp/apidiff"
	"golang.org/x/mod/semver"
	"golang.org/x/tools/go/packages"
)

// errIncompatible is returned when the API broke without the version bump
// that allows it.
var errIncompatible = errors.New("incompatible API change")

// apiBase chooses the release the working tree is judged against: the newest
// release (a VERSION without a pre-release suffix) in VERSION's history; but
// when HEAD is that release's own commit and VERSION is unchanged since, the
// release before it, so that a release commit cannot carry a break that its
// version does not allow. The first release is judged against itself.
func apiBase(rels []release, head, cur string) (release, bool) {
	var rs []release
	for _, r := range rels {
		if semver.Prerelease(r.Version) == "" {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return release{}, false
	}
	if rs[0].Commit == head && rs[0].Version == cur {
		for _, r := range rs[1:] {
			if r.Version != cur {
				return r, true
			}
		}
	}
	return rs[0], true
}

// apiCheck compares the exported API of every library module's packages
// (internal packages and commands excluded) in the working tree with the
// tree of the base release, with golang.org/x/exp/apidiff.
func apiCheck(r *repo, tmp string, w io.Writer) error {
	cur, err := r.worktreeVersion()
	if err != nil {
		return err
	}
	rels, err := r.releases()
	if err != nil {
		return err
	}
	head, err := r.head()
	if err != nil {
		return err
	}
	base, ok := apiBase(rels, head, cur)
	if !ok {
		fmt.Fprintf(w, "api: no release in VERSION's history yet: nothing to compare (VERSION %s)\n", cur)
		return nil
	}
	if semver.Compare(cur, base.Version) < 0 {
		return fmt.Errorf("VERSION %s is lower than the last release, %s (commit %.12s)", cur, base.Version, base.Commit)
	}
	baseDir := filepath.Join(tmp, "api-base")
	if err := r.extractCommit(base.Commit, baseDir); err != nil {
		return err
	}
	baseLibs, err := libraries(baseDir)
	if err != nil {
		return fmt.Errorf("release %s: %w", base.Version, err)
	}
	curLibs, err := libraries(r.root)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "api: the working tree (VERSION %s) against release %s (commit %.12s)\n", cur, base.Version, base.Commit)

	var incompatible, compatible int
	report := func(mod string, c apidiff.Change) {
		kind := "compatible"
		if c.Compatible {
			compatible++
		} else {
			kind = "INCOMPATIBLE"
			incompatible++
		}
		fmt.Fprintf(w, "  %s: %s: %s\n", mod, kind, c.Message)
	}
	for _, bl := range baseLibs {
		if !slices.ContainsFunc(curLibs, func(l library) bool { return l.Path == bl.Path }) {
			report(bl.Path, apidiff.Change{Message: "module removed"})
		}
	}
	for _, cl := range curLibs {
		i := slices.IndexFunc(baseLibs, func(l library) bool { return l.Path == cl.Path })
		if i < 0 {
			report(cl.Path, apidiff.Change{Message: "module added", Compatible: true})
			continue
		}
		oldMod, err := loadAPI(baseDir, baseLibs[i])
		if err != nil {
			return fmt.Errorf("release %s: %w", base.Version, err)
		}
		newMod, err := loadAPI(r.root, cl)
		if err != nil {
			return err
		}
		changes := apidiff.ModuleChanges(oldMod, newMod).Changes
		fmt.Fprintf(w, "  %s: %d packages, %d changes\n", cl.Path, len(newMod.Packages), len(changes))
		for _, c := range changes {
			report(cl.Path, c)
		}
	}
	switch {
	case incompatible > 0 && !allowsIncompatible(base.Version, cur):
		return fmt.Errorf("%w: %d incompatible changes since %s, and VERSION %s does not allow them: "+
			"set VERSION to %s-dev (%s in its release commit) or later, add the change to CHANGELOG.md "+
			"with a migration note (docs/releasing.md), or keep the old API",
			errIncompatible, incompatible, base.Version, cur, nextIncompatible(base.Version), nextIncompatible(base.Version))
	case incompatible > 0:
		fmt.Fprintf(w, "api: %d incompatible changes since %s, allowed by VERSION %s\n", incompatible, base.Version, cur)
	case compatible > 0 && semver.Compare(cur, nextCompatible(base.Version)) < 0:
		fmt.Fprintf(w, "api: compatible: %d additions since %s; the release that carries them is %s or later\n",
			compatible, base.Version, nextCompatible(base.Version))
	default:
		fmt.Fprintf(w, "api: compatible (%d changes)\n", compatible)
	}
	return nil
}

// loadAPI type-checks the packages of one library module of the tree at
// root (in that tree's workspace) and returns its exported API.
func loadAPI(root string, lib library) (*apidiff.Module, error) {
	env := append(os.Environ(), "GOWORK="+filepath.Join(root, "go.work"))
	cfg := &packages.Config{
		Mode: packages.NeedName | packages.NeedTypes | packages.NeedModule,
		Dir:  filepath.Join(root, filepath.FromSlash(lib.Dir)),
		Env:  env,
	}
	pkgs, err := packages.Load(cfg, "./...")
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", lib.Path, err)
	}
	m := &apidiff.Module{Path: lib.Path}
	for _, p := range pkgs {
		if len(p.Errors) > 0 {
			return nil, fmt.Errorf("load %s: %v", p.PkgPath, p.Errors[0])
		}
		if p.Name == "main" || isInternal(p.PkgPath) || p.Module == nil || p.Module.Path != lib.Path {
			continue
		}
		m.Packages = append(m.Packages, p.Types)
	}
	slices.SortFunc(m.Packages, func(a, b *types.Package) int { return strings.Compare(a.Path(), b.Path()) })
	return m, nil
}

func isInternal(pkgPath string) bool {
	return slices.Contains(strings.Split(pkgPath, "/"), "internal")
}
