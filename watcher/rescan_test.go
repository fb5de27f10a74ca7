package watcher

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

type nopProc struct{}

func (nopProc) Process(context.Context, File) (Outcome, error) { return Outcome{}, nil }

type nopImages struct{}

func (nopImages) Exist(context.Context, []string) (bool, error) { return true, nil }
func (nopImages) Unpin(context.Context, []string) error         { return nil }

// putOld writes a file as if it had been there for a long time, always with
// the same mtime.
func putOld(t *testing.T, path, data string) {
	t.Helper()
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// newTestWatcher returns a Watcher of dir, for tests that drive its loop by
// hand, and its configuration.
func newTestWatcher(t *testing.T, dir string) (Config, *Watcher) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dirs = []string{dir}
	cfg.Match = MatchForTest
	w, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nopProc{}, nopImages{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, w
}

// TestOverflowRescans drives the loop by hand, since an inotify overflow
// cannot be provoked from a test: files changed while events were lost are
// found by the rescan, and unchanged ones are left alone.
func TestOverflowRescans(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	put := func(name, data string) { putOld(t, filepath.Join(dir, name), data) }
	put("a.tar", "a")
	put("b.tar", "b")
	put("c.tar", "c")

	_, w := newTestWatcher(t, dir)
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer fsw.Close() // its events are never read: they are "lost"
	l := newLoop(w, fsw, &state{Version: stateVersion, Files: map[string]*record{}})
	l.start()
	for l.q.depth() > 0 {
		j, _ := l.nextJob(context.Background(), time.Now())
		l.dispatched(j)
		st, err := statFile(dir, j.path)
		if err != nil {
			t.Fatal(err)
		}
		img := "img/" + filepath.Base(j.path)
		l.finished(result{job: j, stat: st, out: Outcome{Images: []string{img}}})
	}
	if !w.ready {
		t.Fatal("not ready after every file was processed")
	}

	if err := os.Remove(filepath.Join(dir, "a.tar")); err != nil {
		t.Fatal(err)
	}
	put("b.tar", "B") // same size, same mtime, new content: cannot be told apart
	put("c.tar", "cc")
	put("d.tar", "d")
	l.fsError(fsnotify.ErrEventOverflow)

	want := []string{filepath.Join(dir, "c.tar"), filepath.Join(dir, "d.tar")}
	if !slices.Equal(l.q.order, want) {
		t.Errorf("queue after rescan = %q, want %q", l.q.order, want)
	}
	if _, ok := w.files[filepath.Join(dir, "a.tar")]; ok {
		t.Error("removed file still known after rescan")
	}
	if got := l.q.unpins(); !slices.Equal(got, []string{"img/a.tar"}) {
		t.Errorf("images to unpin = %v, want img/a.tar", got)
	}
}

// TestWatchFailureRescans drives the loop by hand with an fsnotify watcher
// that refuses every watch (it is closed), as inotify does once its watch
// limit is reached: the directory falls back to rescans, says so, finds new,
// changed and removed files by them, and is watched again once a watch can
// be added.
func TestWatchFailureRescans(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	put := func(name, data string) { putOld(t, filepath.Join(dir, name), data) }
	put("a.tar", "a")
	cfg, w := newTestWatcher(t, dir)
	closed, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	l := newLoop(w, closed, &state{Version: stateVersion, Files: map[string]*record{}})
	l.start()
	if got := w.Status().Dirs; len(got) != 1 || got[0].Mode != ModeRescan || got[0].Degraded == "" {
		t.Fatalf("dirs = %+v, want one in rescan mode saying why", got)
	}
	if !strings.Contains(w.Degraded(), "rescanning 1 dir") {
		t.Errorf("Degraded() = %q, want it to name the rescanning mode", w.Degraded())
	}
	finish := func() {
		for l.q.depth() > 0 {
			j, _ := l.nextJob(context.Background(), time.Now())
			l.dispatched(j)
			st, _ := statFile(dir, j.path)
			l.finished(result{job: j, stat: st, out: Outcome{Images: []string{"img/" + filepath.Base(j.path)}}})
		}
	}
	finish()
	if !w.ready {
		t.Fatal("not ready: the startup walk must still find files")
	}

	put("b.tar", "b")
	put("a.tar", "aa")
	_ = l.save() // the state file's deadline is not the one under test
	start := time.Now()
	if wake := l.nextWake(); wake.Before(start.Add(cfg.Rescan/2)) || wake.After(start.Add(cfg.Rescan)) {
		t.Errorf("next wake in %s, want the rescan interval %s", wake.Sub(start), cfg.Rescan)
	}
	l.rescanDue(start) // not due yet
	if l.q.depth() != 0 {
		t.Fatalf("queue before the rescan is due = %q, want empty", l.q.order)
	}
	l.rescanDue(start.Add(cfg.Rescan))
	want := []string{filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")}
	if !slices.Equal(l.q.order, want) {
		t.Errorf("queue after the rescan = %q, want %q", l.q.order, want)
	}
	finish()

	if err := os.Remove(filepath.Join(dir, "a.tar")); err != nil {
		t.Fatal(err)
	}
	l.rescanDue(start.Add(3 * cfg.Rescan))
	if _, ok := w.files[filepath.Join(dir, "a.tar")]; ok {
		t.Error("removed file still known after the rescan")
	}
	if l.q.depth() != 0 {
		t.Errorf("unchanged b.tar queued again by a rescan: %q", l.q.order)
	}

	// inotify can serve again: the next rescan adds the watch.
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer fsw.Close()
	l.fsw = fsw
	l.rescanDue(start.Add(5 * cfg.Rescan))
	if got := w.Status().Dirs; got[0].Mode != ModeInotify || w.Degraded() != "" {
		t.Errorf("dirs = %+v, Degraded() = %q after the watch was added, want inotify", got, w.Degraded())
	}
	if !l.rescanAt.IsZero() {
		t.Errorf("a rescan is still scheduled at %v with every directory watched", l.rescanAt)
	}
}
