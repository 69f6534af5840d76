package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"
)

// worktreeSource names the working tree as the source of a version.
const worktreeSource = "worktree"

// proxyBuilder writes a file-based module proxy (GOPROXY=file://dir) of the
// repository's library modules. Each version is zipped from one tree: the
// working tree, or the release commit of that version.
type proxyBuilder struct {
	r           *repo
	out         string // the proxy's directory
	tmp         string // where trees are extracted
	rootPath    string // module path of the root module; ours are it and below
	rels        []release
	wtVersion   string
	headVersion string
	trees       map[string]string // source (commit or worktreeSource) → extracted dir
	done        map[module.Version]string
	queue       []module.Version
}

func newProxyBuilder(r *repo, out, tmp string) (*proxyBuilder, error) {
	wt, err := r.worktreeVersion()
	if err != nil {
		return nil, err
	}
	rels, err := r.releases()
	if err != nil {
		return nil, err
	}
	hv, err := r.versionAt("HEAD")
	if err != nil && !errors.Is(err, errNoVersionFile) {
		return nil, err
	}
	mf, err := readModFile(filepath.Join(r.root, "go.mod"))
	if err != nil {
		return nil, err
	}
	return &proxyBuilder{
		r: r, out: out, tmp: tmp, rootPath: mf.Module.Mod.Path, rels: rels,
		wtVersion: wt, headVersion: hv,
		trees: map[string]string{}, done: map[module.Version]string{},
	}, nil
}

// ours reports whether a module path is one of this repository's modules.
func (b *proxyBuilder) ours(p string) bool {
	return p == b.rootPath || strings.HasPrefix(p, b.rootPath+"/")
}

// sourceOf says which tree version v is zipped from: the working tree while
// VERSION there is v and not yet committed, otherwise the commit that set
// VERSION to v.
func (b *proxyBuilder) sourceOf(v string) (string, error) {
	if v == b.wtVersion && b.headVersion != v {
		return worktreeSource, nil
	}
	if c, ok := releaseCommit(b.rels, v); ok {
		return c, nil
	}
	return "", fmt.Errorf("no commit sets VERSION to %s: it was never released from this repository", v)
}

// tree extracts a source once and returns its directory.
func (b *proxyBuilder) tree(src string) (string, error) {
	if d, ok := b.trees[src]; ok {
		return d, nil
	}
	d := filepath.Join(b.tmp, fmt.Sprintf("tree%d", len(b.trees)))
	var err error
	if src == worktreeSource {
		err = b.r.extractWorktree(d)
	} else {
		err = b.r.extractCommit(src, d)
	}
	if err != nil {
		return "", err
	}
	b.trees[src] = d
	return d, nil
}

// addWorktree queues every library module at the working tree's VERSION,
// zipped from the working tree.
func (b *proxyBuilder) addWorktree() error {
	libs, err := libraries(b.r.root)
	if err != nil {
		return err
	}
	for _, l := range libs {
		if err := b.add(module.Version{Path: l.Path, Version: b.wtVersion}, worktreeSource); err != nil {
			return err
		}
	}
	return nil
}

// addRequired queues every version of our modules that a go.mod of the
// working tree's workspace requires, from that version's source.
func (b *proxyBuilder) addRequired() error {
	dirs, err := workModules(b.r.root)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		mf, err := readModFile(filepath.Join(b.r.root, d, "go.mod"))
		if err != nil {
			return err
		}
		if err := b.addRequirements(mf); err != nil {
			return fmt.Errorf("%s/go.mod: %w", d, err)
		}
	}
	return nil
}

func (b *proxyBuilder) addRequirements(mf *modfile.File) error {
	for _, req := range mf.Require {
		if !b.ours(req.Mod.Path) {
			continue
		}
		if replaced(mf, req.Mod) {
			continue // a program's go.mod pointing at the local tree
		}
		src, err := b.sourceOf(req.Mod.Version)
		if err != nil {
			return fmt.Errorf("requires %s: %w", req.Mod, err)
		}
		if err := b.add(req.Mod, src); err != nil {
			return err
		}
	}
	return nil
}

func replaced(mf *modfile.File, m module.Version) bool {
	for _, r := range mf.Replace {
		if r.Old.Path == m.Path && (r.Old.Version == "" || r.Old.Version == m.Version) {
			return true
		}
	}
	return false
}

func (b *proxyBuilder) add(m module.Version, src string) error {
	if _, ok := b.done[m]; ok {
		return nil
	}
	b.done[m] = src
	b.queue = append(b.queue, m)
	return nil
}

// build zips everything queued, and what those modules require of ours, and
// writes the list files. It returns the module versions it wrote.
func (b *proxyBuilder) build() ([]module.Version, error) {
	var written []module.Version
	for len(b.queue) > 0 {
		m := b.queue[0]
		b.queue = b.queue[1:]
		src := b.done[m]
		dir, err := b.tree(src)
		if err != nil {
			return nil, err
		}
		libs, err := libraries(dir)
		if err != nil {
			return nil, fmt.Errorf("%s at %s: %w", m, src, err)
		}
		var lib *library
		for i := range libs {
			if libs[i].Path == m.Path {
				lib = &libs[i]
			}
		}
		if lib == nil {
			return nil, fmt.Errorf("%s: the tree at %s has no library module %s", m, src, m.Path)
		}
		modDir := filepath.Join(dir, filepath.FromSlash(lib.Dir))
		if err := b.writeModule(m, src, modDir); err != nil {
			return nil, err
		}
		written = append(written, m)
		mf, err := readModFile(filepath.Join(modDir, "go.mod"))
		if err != nil {
			return nil, err
		}
		if len(mf.Replace) > 0 {
			return nil, fmt.Errorf("%s: go.mod has replace directives, which go get ignores", m)
		}
		if err := b.addRequirements(mf); err != nil {
			return nil, fmt.Errorf("%s: %w", m, err)
		}
	}
	return written, b.writeLists(written)
}

// writeModule writes m's .info, .mod and .zip in the proxy layout
// (<escaped path>/@v/<escaped version>.*), the zip made from modDir by the
// rules the go command uses (nested modules, vendor and VCS directories left
// out).
func (b *proxyBuilder) writeModule(m module.Version, src, modDir string) error {
	ep, err := module.EscapePath(m.Path)
	if err != nil {
		return err
	}
	ev, err := module.EscapeVersion(m.Version)
	if err != nil {
		return err
	}
	base := filepath.Join(b.out, filepath.FromSlash(ep), "@v", ev)
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		return err
	}
	zf, err := os.Create(base + ".zip")
	if err != nil {
		return err
	}
	if err := modzip.CreateFromDir(zf, m, modDir); err != nil {
		zf.Close()
		return fmt.Errorf("zip %s: %w", m, err)
	}
	if err := zf.Close(); err != nil {
		return err
	}
	gomod, err := os.ReadFile(filepath.Join(modDir, "go.mod"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".mod", gomod, 0o644); err != nil {
		return err
	}
	t := time.Now().UTC().Truncate(time.Second)
	if src != worktreeSource {
		out, err := b.r.git("show", "-s", "--format=%cI", src)
		if err != nil {
			return err
		}
		if t, err = time.Parse(time.RFC3339, strings.TrimSpace(string(out))); err != nil {
			return err
		}
		t = t.UTC()
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{m.Version, t})
	if err != nil {
		return err
	}
	return os.WriteFile(base+".info", info, 0o644)
}

func (b *proxyBuilder) writeLists(written []module.Version) error {
	versions := map[string][]string{}
	for _, m := range written {
		versions[m.Path] = append(versions[m.Path], m.Version)
	}
	paths := make([]string, 0, len(versions))
	for p := range versions {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		vs := versions[p]
		semver.Sort(vs)
		ep, err := module.EscapePath(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(b.out, filepath.FromSlash(ep), "@v", "list"), []byte(strings.Join(vs, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}
