package watcher

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// configMapData is the symlink a Kubernetes ConfigMap volume swaps on update.
const configMapData = "..data"

// found is a file seen by a walk.
type found struct {
	path string
	stat fileStat
}

// start sets up the watches, walks every directory and queues what it finds.
func (l *loop) start() {
	l.starting = true
	for _, d := range l.w.dirs {
		l.scan(d)
	}
	l.starting = false
	l.scheduleRescan(time.Now())
	l.checkReady()
}

// rescan walks every directory again, after events were lost.
func (l *loop) rescan() {
	for _, d := range l.w.dirs {
		l.scan(d)
	}
}

// ensureDir watches d and walks it if it exists; otherwise it watches the
// nearest existing ancestor, whose events will tell when d appears. A watch is
// always added before the directory is read, so nothing created in between is
// missed.
func (l *loop) ensureDir(d string) {
	for {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			seen := l.walk(d, d)
			l.reconcile(d, seen)
			return
		}
		a := nearestDir(filepath.Dir(d))
		if !l.addWatch(a, d) {
			return // found by a rescan when it appears
		}
		l.w.log.Info("waiting_for_dir", "dir", d, "watching", a)
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			continue // appeared meanwhile
		}
		if nearestDir(filepath.Dir(d)) == a {
			return
		}
	}
}

// nearestDir returns p or its nearest ancestor that is an existing directory.
func nearestDir(p string) string {
	for {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p
		}
		parent := filepath.Dir(p)
		if parent == p {
			return p
		}
		p = parent
	}
}

// walk watches root and the directories below it, then hands the supported
// files found to found, in lexical order. It returns the files it saw.
func (l *loop) walk(root, dir string) map[string]bool {
	start := root
	if fi, err := os.Lstat(root); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		start = root + string(filepath.Separator) // WalkDir follows a symlinked root only so
	}
	var files []found
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if p == start {
			p = root
		}
		if err != nil {
			l.w.log.Warn("walk_failed", "path", p, "err", err)
			return nil
		}
		if p != root && hidden(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if l.addWatch(p, dir) {
				l.watched[p] = struct{}{}
			}
			return nil
		}
		if l.w.match(p) == "" {
			return nil
		}
		st, err := statFile(dir, p)
		if err != nil {
			return nil // gone already, or a link to a directory
		}
		files = append(files, found{path: p, stat: st})
		return nil
	})
	if err != nil {
		l.w.log.Warn("walk_failed", "path", root, "err", err)
	}
	slices.SortFunc(files, func(a, b found) int { return strings.Compare(a.path, b.path) })
	seen := make(map[string]bool, len(files))
	now := time.Now()
	for _, f := range files {
		seen[f.path] = true
		l.found(f, dir, now)
	}
	return seen
}

// reconcile forgets the files below d that a walk of d did not see.
func (l *loop) reconcile(d string, seen map[string]bool) {
	var gone []string
	for p := range l.w.files {
		if within(p, d) && !seen[p] {
			gone = append(gone, p)
		}
	}
	for p := range l.recs {
		if within(p, d) && !seen[p] && l.w.files[p] == nil {
			gone = append(gone, p)
		}
	}
	for _, p := range gone {
		l.fileGone(p)
	}
}

// touch returns the file at path, creating it if new.
func (l *loop) touch(path, dir string) *file {
	if f := l.w.files[path]; f != nil {
		return f
	}
	f := &file{path: path, dir: dir, kind: l.w.match(path), initial: l.starting}
	if f.initial {
		l.outstanding++
	}
	if r := l.recs[path]; r != nil {
		f.images = r.Images
		f.size = r.Size
		f.updated = r.Updated
		if len(r.Detail) > 0 {
			f.detail = r.Detail
		}
	}
	l.w.files[path] = f
	return f
}

// dirOf returns the watched directory path is strictly below, or "".
func (l *loop) dirOf(path string) string {
	for _, d := range l.w.dirs {
		if within(path, d) {
			return d
		}
	}
	return ""
}

// hidden reports whether a name is skipped: dot files are temporary files of
// rsync and editors, and ConfigMap internals.
func hidden(name string) bool { return strings.HasPrefix(name, ".") }

// event handles one fsnotify event.
func (l *loop) event(ev fsnotify.Event) {
	name := filepath.Clean(ev.Name)
	removed := ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)

	// A watched directory, or one of its ancestors, appeared or went away.
	var handled bool
	for _, d := range l.w.dirs {
		if d != name && !within(d, name) {
			continue
		}
		handled = true
		if removed {
			l.w.log.Info("dir_gone", "dir", d)
			l.gone(d)
			l.ensureDir(d)
		} else if ev.Has(fsnotify.Create) {
			l.ensureDir(d)
		}
	}
	if handled {
		return
	}

	dir := l.dirOf(name)
	if dir == "" {
		return
	}
	rel, err := filepath.Rel(dir, name)
	if err != nil {
		return
	}
	if filepath.Base(name) == configMapData {
		if ev.Has(fsnotify.Create) && !hiddenPath(filepath.Dir(rel)) {
			l.configMapSwap(filepath.Dir(name), dir)
		}
		return
	}
	if hiddenPath(rel) {
		return
	}
	if l.companionChanged(name) {
		return
	}
	if removed {
		l.gone(name)
	}
	if ev.Has(fsnotify.Create) {
		l.created(name, dir)
	}
	if ev.Has(fsnotify.Write) || ev.Has(fsnotify.Chmod) {
		l.written(name, dir)
	}
}

// hiddenPath reports whether any element of a relative path is hidden.
func hiddenPath(rel string) bool {
	if rel == "." {
		return false
	}
	for _, el := range strings.Split(filepath.ToSlash(rel), "/") {
		if hidden(el) {
			return true
		}
	}
	return false
}

// created handles a Create: a new directory is watched and walked, a new
// file is probed.
func (l *loop) created(name, dir string) {
	fi, err := os.Lstat(name)
	if err != nil {
		return // gone already; its Remove follows
	}
	if fi.IsDir() {
		l.walk(name, dir)
		return
	}
	l.pendFile(name, dir, true, probeWindow) // see settle.go
}

// configMapSwap handles a new ..data symlink in dir: a ConfigMap volume was
// updated, and every visible file whose target changed is processed again.
func (l *loop) configMapSwap(cmDir, dir string) {
	entries, err := os.ReadDir(cmDir)
	if err != nil {
		l.w.log.Warn("read_dir_failed", "path", cmDir, "err", err)
		return
	}
	l.w.log.Info("configmap_updated", "path", cmDir)
	for _, e := range entries {
		p := filepath.Join(cmDir, e.Name())
		if hidden(e.Name()) || l.w.match(p) == "" {
			continue
		}
		st, err := statFile(dir, p)
		if err != nil {
			continue
		}
		f := l.w.files[p]
		if r := l.recs[p]; r != nil && r.same(st) && f != nil && !l.q.state(p).busy() {
			continue
		}
		f = l.touch(p, dir)
		f.size = st.Size
		delete(l.pend, p)
		l.ready(p, st)
	}
}

// gone handles a Remove or Rename of path, a file or a directory: everything
// at or below it is forgotten.
func (l *loop) gone(path string) {
	if _, isDir := l.watched[path]; !isDir && !slices.Contains(l.w.dirs, path) {
		delete(l.pend, path)
		l.fileGone(path)
		return
	}
	for p := range l.watched {
		if p == path || within(p, path) {
			_ = l.fsw.Remove(p) // already gone if deleted; still there if moved
			delete(l.watched, p)
		}
	}
	for p := range l.pend {
		if within(p, path) {
			delete(l.pend, p)
		}
	}
	var files []string
	for p := range l.w.files {
		if within(p, path) {
			files = append(files, p)
		}
	}
	for p := range l.recs {
		if within(p, path) && l.w.files[p] == nil {
			files = append(files, p)
		}
	}
	for _, p := range files {
		l.fileGone(p)
	}
}
