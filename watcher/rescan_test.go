package watcher

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

type nopProc struct{}

func (nopProc) Process(context.Context, string) (Outcome, error) { return Outcome{}, nil }

type nopImages struct{}

func (nopImages) Exist(context.Context, []string) (bool, error) { return true, nil }
func (nopImages) Unpin(context.Context, []string) error         { return nil }

// TestOverflowRescans drives the loop by hand, since an inotify overflow
// cannot be provoked from a test: files changed while events were lost are
// found by the rescan, and unchanged ones are left alone.
func TestOverflowRescans(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	put := func(name, data string) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	put("a.tar", "a")
	put("b.tar", "b")
	put("c.tar", "c")

	cfg := DefaultConfig()
	cfg.Dirs = []string{dir}
	w, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nopProc{}, nopImages{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer fsw.Close() // its events are never read: they are "lost"
	l := newLoop(w, fsw, &state{Version: stateVersion, Files: map[string]*record{}})
	l.start()
	for l.q.depth() > 0 {
		j, _ := l.nextJob(time.Now())
		l.dispatched(j)
		st, err := statFile(j.path)
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
