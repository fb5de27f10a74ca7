package watcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// stateVersion is bumped when the state file changes incompatibly.
const stateVersion = 1

// fileStat is the identity of a file's content as the watcher sees it:
// symlinks are followed, so a ConfigMap key is identified by its target.
type fileStat struct {
	Size  int64     `json:"size"`
	Mtime time.Time `json:"mtime"`
	Inode uint64    `json:"inode"`
}

func (s fileStat) same(o fileStat) bool {
	return s.Size == o.Size && s.Mtime.Equal(o.Mtime) && s.Inode == o.Inode
}

// statFile stats path, found in the watched directory root. A symlink is
// followed only if it resolves within root (a ConfigMap volume's files are
// such links); otherwise the link itself is statted, so that nothing of what
// it points to (its size, its times) is shown, and the Processor, which
// refuses it, is told when the link changes. A FIFO, socket or device is
// statted as it is and handed on, for the Processor to refuse it without
// blocking: the watcher never opens a file. It returns an error wrapping
// fs.ErrNotExist if path is gone, and errNotRegular if it is a directory.
func statFile(root, path string) (fileStat, error) {
	fi, err := os.Lstat(path)
	if err == nil && fi.Mode()&fs.ModeSymlink != 0 && resolvesWithin(root, path) {
		fi, err = os.Stat(path)
	}
	if err != nil {
		return fileStat{}, fmt.Errorf("stat: %w", err)
	}
	if fi.IsDir() {
		return fileStat{}, errNotRegular
	}
	st := fileStat{Size: fi.Size(), Mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Inode = sys.Ino
	}
	return st, nil
}

var errNotRegular = errors.New("a directory, not a file")

// resolvesWithin reports whether the symlink at path resolves to a file
// strictly within root. A dangling link resolves nowhere.
func resolvesWithin(root, path string) bool {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r // root itself may be reached through a link
	}
	return within(target, root)
}

// record is what the state file remembers of one file.
type record struct {
	fileStat
	Result  string          `json:"result"` // ResultSuccess or ResultFailure
	Images  []string        `json:"images"`
	Detail  json.RawMessage `json:"detail,omitempty"`
	Updated time.Time       `json:"updated"`
}

// state is the content of the state file.
type state struct {
	Version int                `json:"version"`
	Files   map[string]*record `json:"files"`
	// Unpin holds images whose files are gone but which were not yet unpinned.
	Unpin []string `json:"unpin,omitempty"`
}

// loadState reads the state file. On any problem, a missing file included
// (its error wraps fs.ErrNotExist), it returns an empty state and the error.
func loadState(path string) (*state, error) {
	empty := &state{Version: stateVersion, Files: map[string]*record{}}
	if path == "" {
		return empty, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return empty, fmt.Errorf("read state %s: %w", path, err)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return empty, fmt.Errorf("parse state %s: %w", path, err)
	}
	if s.Version != stateVersion {
		return empty, fmt.Errorf("state %s: version %d, want %d", path, s.Version, stateVersion)
	}
	if s.Files == nil {
		s.Files = map[string]*record{}
	}
	for p, r := range s.Files {
		if r == nil || !filepath.IsAbs(p) {
			delete(s.Files, p)
		}
	}
	return &s, nil
}

// saveState writes s to path atomically: a temporary file in the same
// directory is written, synced and renamed over path, then the directory is
// synced.
func saveState(path string, s *state) error {
	if path == "" {
		return nil
	}
	slices.Sort(s.Unpin)
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save state %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("save state %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save state %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save state %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save state %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save state %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: the rename is already visible
		d.Close()
	}
	return nil
}

// Saving the state is delayed a little, so that a burst of results is
// written once.
const (
	saveDelay = 200 * time.Millisecond
	saveRetry = 5 * time.Second
)

func (l *loop) markDirty() {
	l.changed = true
	if !l.dirty {
		l.dirty = true
		l.saveAt = time.Now().Add(saveDelay)
	}
}

// save writes the state file. A failure is logged, counted, shown in Status
// and retried after saveRetry; imports go on meanwhile.
func (l *loop) save() error {
	s := &state{Version: stateVersion, Files: l.recs, Unpin: l.q.unpins()}
	if err := saveState(l.w.cfg.StateFile, s); err != nil {
		l.w.log.Error("state_save_failed", "path", l.w.cfg.StateFile, "err", err, "retry_in", saveRetry)
		l.w.obs.StateSaveFailed()
		l.w.saveErr = err.Error()
		l.saveAt = time.Now().Add(saveRetry)
		return err
	}
	if l.w.saveErr != "" {
		l.w.log.Info("state_saved_again", "path", l.w.cfg.StateFile)
		l.w.saveErr = ""
	}
	l.dirty = false
	return nil
}
