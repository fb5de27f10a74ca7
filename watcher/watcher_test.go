package watcher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/watcher"
)

func TestPreloadOrderAndStatus(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, name := range []string{
		"10-app.tar", "00-system.tar.zst", "sub/05-x.TGZ", "20-list.txt",
		".hidden.tar", ".rsync/inside.tar", "readme.md", "sub/notes",
	} {
		put(t, filepath.Join(dir, name), "data of "+name)
	}
	cfg := testConfig(t, dir)
	cfg.Workers = 1
	p := &fakeProc{}
	obs := &countObs{}
	r := start(t, cfg, p, &fakeImages{}, obs)

	waitFor(t, "ready", r.w.Ready)
	var got []string
	for _, c := range p.all() {
		rel, _ := filepath.Rel(dir, c.path)
		got = append(got, rel)
	}
	want := []string{"00-system.tar.zst", "10-app.tar", "20-list.txt", "sub/05-x.TGZ"}
	if !slices.Equal(got, want) {
		t.Errorf("processed %q, want %q", got, want)
	}
	if err := r.w.Healthy(); err != nil {
		t.Errorf("Healthy() = %v, want nil", err)
	}
	if synced, _ := obs.counts(); synced != 1 || obs.get(watcher.ResultSuccess) != 4 {
		t.Errorf("observer: synced %d, success %d; want 1, 4", synced, obs.get(watcher.ResultSuccess))
	}

	b, err := json.Marshal(r.w.Status())
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Ready bool
		Files []map[string]any
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if !st.Ready || len(st.Files) != 4 {
		t.Fatalf("status = %s, want ready with 4 files", b)
	}
	f := st.Files[3]
	for key, want := range map[string]any{
		"path": "sub/05-x.TGZ", "kind": "archive", "state": "done", "attempts": 1.0,
		"images": []any{"img/05-x.TGZ"}, "size": float64(len("data of sub/05-x.TGZ")),
	} {
		if g, _ := json.Marshal(f[key]); string(g) != mustJSON(t, want) {
			t.Errorf("status %s = %s, want %s", key, g, mustJSON(t, want))
		}
	}
	if _, err := time.Parse(time.RFC3339, f["updated"].(string)); err != nil {
		t.Errorf("status updated: %v", err)
	}
	if _, ok := f["duration_seconds"].(float64); !ok {
		t.Errorf("status duration_seconds = %v, want a number", f["duration_seconds"])
	}

	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.w.Healthy(); err == nil {
		t.Error("Healthy() after Run returned = nil, want an error")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRenameInStartsFast(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Settle = 2 * time.Second // so a settled start would be obvious
	p := &fakeProc{}
	r := start(t, cfg, p, &fakeImages{}, nil)
	waitFor(t, "ready", r.w.Ready)

	path := filepath.Join(dir, "app.tar")
	at := moveIn(t, path, "complete archive")
	waitFor(t, "Process call", func() bool { return p.count(path) == 1 })
	latency := p.all()[0].at.Sub(at)
	t.Logf("rename to Process latency: %s", latency)
	if latency >= cfg.Settle {
		t.Errorf("renamed file started after %s, not before Settle %s", latency, cfg.Settle)
	}
	r.waitState(t, "app.tar", watcher.StateDone)
}

func TestInPlaceWriterProcessedOnceWhenDone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		firstPause time.Duration // between create and first write
		chunks     int
		pause      time.Duration // between chunks, shorter than Settle
	}{
		{"steady slow writer", 0, 8, 60 * time.Millisecond},
		{"pause before first write", 100 * time.Millisecond, 4, 60 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := testConfig(t, dir)
			// Many times the writer's pauses: on a loaded machine a 60 ms
			// sleep can take several times that, which the watcher cannot
			// tell from a writer that has stopped.
			cfg.Settle = time.Second
			p := &fakeProc{}
			r := start(t, cfg, p, &fakeImages{}, nil)
			waitFor(t, "ready", r.w.Ready)

			path := filepath.Join(dir, "slow.tar.gz")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(tt.firstPause) // the writer's own pace, not synchronisation
			chunk := strings.Repeat("x", 4096)
			for i := range tt.chunks {
				if _, err := f.WriteString(chunk); err != nil {
					t.Fatal(err)
				}
				if i < tt.chunks-1 {
					time.Sleep(tt.pause)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			r.waitState(t, "slow.tar.gz", watcher.StateDone)
			calls := p.all()
			if len(calls) != 1 {
				t.Fatalf("Process called %d times, want 1", len(calls))
			}
			if got, want := len(calls[0].data), tt.chunks*len(chunk); got != want {
				t.Errorf("Process saw %d bytes, want %d", got, want)
			}
		})
	}
}

func TestRsyncTempFileThenRename(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := &fakeProc{}
	r := start(t, testConfig(t, dir), p, &fakeImages{}, nil)
	waitFor(t, "ready", r.w.Ready)

	tmp := filepath.Join(dir, ".app.tar.Xy12Ab")
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := f.WriteString(strings.Repeat("r", 1000)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // rsync's pace
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "app.tar")); err != nil {
		t.Fatal(err)
	}
	r.waitState(t, "app.tar", watcher.StateDone)
	calls := p.all()
	if len(calls) != 1 || filepath.Base(calls[0].path) != "app.tar" || len(calls[0].data) != 5000 {
		t.Errorf("calls = %+v, want one call for app.tar with 5000 bytes", calls)
	}
	if _, ok := r.file(".app.tar.Xy12Ab"); ok {
		t.Error("hidden temporary file appears in status")
	}
}

func TestSameSizeReplacementReprocessed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		replace func(t *testing.T, path string)
	}{
		{"rewritten in place with older mtime", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("BBBB"), 0o644); err != nil {
				t.Fatal(err)
			}
			older := old.Add(-time.Hour)
			if err := os.Chtimes(path, older, older); err != nil {
				t.Fatal(err)
			}
		}},
		{"renamed over with older mtime", func(t *testing.T, path string) {
			tmp := filepath.Join(t.TempDir(), "new")
			if err := os.WriteFile(tmp, []byte("BBBB"), 0o644); err != nil {
				t.Fatal(err)
			}
			older := old.Add(-time.Hour)
			if err := os.Chtimes(tmp, older, older); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "a.tar")
			put(t, path, "AAAA")
			p := &fakeProc{}
			r := start(t, testConfig(t, dir), p, &fakeImages{}, nil)
			r.waitState(t, "a.tar", watcher.StateDone)

			tt.replace(t, path)
			waitFor(t, "second Process call", func() bool { return p.count(path) == 2 })
			if got := p.all()[1].data; got != "BBBB" {
				t.Errorf("second call saw %q, want %q", got, "BBBB")
			}
		})
	}
}

func TestRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		missing     bool // images gone from the store meanwhile
		wantCalls   int
		wantSkipped int
	}{
		{"unchanged files are skipped", false, 0, 3},
		{"missing images are imported again", true, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for _, name := range []string{"a.tar", "b.tar.zst", "c.txt"} {
				put(t, filepath.Join(dir, name), name)
			}
			cfg := testConfig(t, dir)
			p1 := &fakeProc{}
			r1 := start(t, cfg, p1, &fakeImages{}, nil)
			waitFor(t, "first run ready", r1.w.Ready)
			if err := r1.stop(); err != nil {
				t.Fatal(err)
			}
			if n := len(p1.all()); n != 3 {
				t.Fatalf("first run processed %d files, want 3", n)
			}

			p2 := &fakeProc{}
			obs := &countObs{}
			r2 := start(t, cfg, p2, &fakeImages{missing: tt.missing}, obs)
			waitFor(t, "second run ready", r2.w.Ready)
			if n := len(p2.all()); n != tt.wantCalls {
				t.Errorf("second run processed %d files, want %d", n, tt.wantCalls)
			}
			if n := obs.get(watcher.ResultSkipped); n != tt.wantSkipped {
				t.Errorf("second run skipped %d files, want %d", n, tt.wantSkipped)
			}
			for _, f := range r2.w.Status().Files {
				if f.State != watcher.StateDone || len(f.Images) != 1 {
					t.Errorf("status of %s = %s with images %q, want done with one image", f.Path, f.State, f.Images)
				}
			}
		})
	}
}

func TestPinsFollowFiles(t *testing.T) {
	t.Parallel()
	t.Run("deleted file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		put(t, filepath.Join(dir, "a.tar"), "a")
		put(t, filepath.Join(dir, "b.tar"), "b")
		p := &fakeProc{fn: func(_ context.Context, path string, _ int) (watcher.Outcome, error) {
			own := "img/" + strings.TrimSuffix(filepath.Base(path), ".tar")
			return watcher.Outcome{Images: []string{own, "img/shared"}}, nil
		}}
		img := &fakeImages{}
		r := start(t, testConfig(t, dir), p, img, nil)
		waitFor(t, "ready", r.w.Ready)

		if err := os.Remove(filepath.Join(dir, "a.tar")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "unpin", func() bool { return len(img.unpins()) > 0 })
		if got, want := img.unpins(), [][]string{{"img/a"}}; !equalNested(got, want) {
			t.Errorf("unpinned %q, want %q", got, want)
		}
		if _, ok := r.file("a.tar"); ok {
			t.Error("deleted file still in status")
		}
	})
	t.Run("list shrinks", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		path := filepath.Join(dir, "images.txt")
		put(t, path, "img/a\nimg/b\n")
		p := &fakeProc{fn: func(_ context.Context, path string, _ int) (watcher.Outcome, error) {
			b, err := os.ReadFile(path)
			return watcher.Outcome{Images: strings.Fields(string(b))}, err
		}}
		img := &fakeImages{}
		r := start(t, testConfig(t, dir), p, img, nil)
		r.waitState(t, "images.txt", watcher.StateDone)

		moveIn(t, path, "img/a\n")
		waitFor(t, "unpin", func() bool { return len(img.unpins()) > 0 })
		if got, want := img.unpins(), [][]string{{"img/b"}}; !equalNested(got, want) {
			t.Errorf("unpinned %q, want %q", got, want)
		}
		if f := r.waitState(t, "images.txt", watcher.StateDone); !slices.Equal(f.Images, []string{"img/a"}) {
			t.Errorf("images = %q, want [img/a]", f.Images)
		}
	})
	t.Run("partial failure unpins nothing", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		path := filepath.Join(dir, "images.txt")
		put(t, path, "img/a\nimg/b\n")
		p := &fakeProc{fn: func(_ context.Context, path string, n int) (watcher.Outcome, error) {
			if n == 1 {
				return watcher.Outcome{Images: []string{"img/a", "img/b"}}, nil
			}
			return watcher.Outcome{Images: []string{"img/a"}}, errors.New("pull img/b: unavailable")
		}}
		img := &fakeImages{}
		cfg := testConfig(t, dir)
		cfg.RetryMin, cfg.RetryMax = time.Hour, time.Hour
		r := start(t, cfg, p, img, nil)
		r.waitState(t, "images.txt", watcher.StateDone)

		moveIn(t, path, "img/a\nimg/b\n")
		f := r.waitState(t, "images.txt", watcher.StateFailed)
		if !slices.Equal(f.Images, []string{"img/a", "img/b"}) || f.Error == "" {
			t.Errorf("status = %+v, want failed with both images and an error", f)
		}
		if u := img.unpins(); len(u) != 0 {
			t.Errorf("unpinned %q, want nothing", u)
		}
	})
}

func equalNested(a, b [][]string) bool {
	return slices.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

func TestDirAppearsLater(t *testing.T) {
	t.Parallel()
	t.Run("missing at start", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "not", "yet", "images")
		p := &fakeProc{}
		r := start(t, testConfig(t, dir), p, &fakeImages{}, nil)
		waitFor(t, "ready", r.w.Ready)

		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		moveIn(t, filepath.Join(dir, "a.tar"), "a")
		r.waitState(t, "a.tar", watcher.StateDone)
	})
	t.Run("deleted and recreated", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "images")
		put(t, filepath.Join(dir, "sub", "a.tar"), "a")
		p := &fakeProc{}
		img := &fakeImages{}
		r := start(t, testConfig(t, dir), p, img, nil)
		r.waitState(t, "sub/a.tar", watcher.StateDone)

		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "unpin", func() bool { return len(img.unpins()) > 0 })
		if got, want := img.unpins(), [][]string{{"img/a.tar"}}; !equalNested(got, want) {
			t.Errorf("unpinned %q, want %q", got, want)
		}
		if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		moveIn(t, filepath.Join(dir, "sub", "b.tar"), "b")
		r.waitState(t, "sub/b.tar", watcher.StateDone)
		if n := len(r.w.Status().Files); n != 1 {
			t.Errorf("status has %d files, want 1", n)
		}
	})
}

// configMapUpdate writes a ConfigMap volume's files the way kubelet's atomic
// writer does: a new timestamped directory, a ..data_tmp symlink renamed over
// ..data, and visible symlinks into ..data.
func configMapUpdate(t *testing.T, dir, ts string, files map[string]string) {
	t.Helper()
	tsDir := filepath.Join(dir, ts)
	if err := os.Mkdir(tsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(tsDir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	prev, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			t.Fatal(err)
		}
	}
	if prev != "" {
		if err := os.RemoveAll(filepath.Join(dir, prev)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConfigMapUpdateRereadsList(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	configMapUpdate(t, dir, "..2024_01_01_00_00_00.1", map[string]string{"images.txt": "img/a:v1\n"})
	p := &fakeProc{}
	r := start(t, testConfig(t, dir), p, &fakeImages{}, nil)
	r.waitState(t, "images.txt", watcher.StateDone)

	configMapUpdate(t, dir, "..2024_01_01_00_01_00.2", map[string]string{"images.txt": "img/a:v2\n"})
	path := filepath.Join(dir, "images.txt")
	waitFor(t, "list read again", func() bool { return p.count(path) == 2 })
	calls := p.all()
	if calls[0].data != "img/a:v1\n" || calls[1].data != "img/a:v2\n" {
		t.Errorf("list contents seen = %q, %q; want v1 then v2", calls[0].data, calls[1].data)
	}
	for _, c := range calls {
		if filepath.Dir(c.path) != dir || strings.Contains(c.path, "..") {
			t.Errorf("processed %s, want only the visible file", c.path)
		}
	}

	configMapUpdate(t, dir, "..2024_01_01_00_02_00.3", map[string]string{"images.txt": "img/a:v3\n"})
	waitFor(t, "list read a third time", func() bool { return p.count(path) == 3 })
}

func TestManyFilesAtOnce(t *testing.T) {
	t.Parallel()
	const n = 500
	tests := []struct {
		name string
		drop func(t *testing.T, staging, dir string)
	}{
		{"renamed in", func(t *testing.T, staging, dir string) {
			for i := range n {
				name := fmt.Sprintf("f%03d.tar", i)
				if err := os.WriteFile(filepath.Join(staging, name), []byte(name), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for i := range n {
				name := fmt.Sprintf("f%03d.tar", i)
				if err := os.Rename(filepath.Join(staging, name), filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"written in place", func(t *testing.T, _, dir string) {
			for i := range n {
				name := fmt.Sprintf("f%03d.tar", i)
				if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			p := &fakeProc{}
			r := start(t, testConfig(t, dir), p, &fakeImages{}, nil)
			waitFor(t, "ready", r.w.Ready)

			tt.drop(t, t.TempDir(), dir)
			waitFor(t, "all files done", func() bool {
				st := r.w.Status()
				if len(st.Files) != n {
					return false
				}
				for _, f := range st.Files {
					if f.State != watcher.StateDone {
						return false
					}
				}
				return true
			})
			counts := map[string]int{}
			for _, c := range p.all() {
				counts[c.path]++
				if c.data != filepath.Base(c.path) {
					t.Errorf("%s: Process saw %q", c.path, c.data)
				}
			}
			if len(counts) != n {
				t.Errorf("processed %d distinct files, want %d", len(counts), n)
			}
			for path, c := range counts {
				if c != 1 {
					t.Errorf("%s processed %d times, want 1", path, c)
				}
			}
		})
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	t.Run("until success", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		put(t, filepath.Join(dir, "a.tar"), "a")
		p := &fakeProc{fn: func(_ context.Context, _ string, n int) (watcher.Outcome, error) {
			if n < 3 {
				return watcher.Outcome{}, fmt.Errorf("attempt %d: containerd unavailable", n)
			}
			return watcher.Outcome{Images: []string{"img/a"}}, nil
		}}
		obs := &countObs{}
		r := start(t, testConfig(t, dir), p, &fakeImages{}, obs)
		waitFor(t, "ready", r.w.Ready) // the first failure counts for readiness
		f := r.waitState(t, "a.tar", watcher.StateDone)
		if f.Attempts != 3 || f.Error != "" {
			t.Errorf("status = %+v, want done after 3 attempts", f)
		}
		if _, retries := obs.counts(); obs.get(watcher.ResultFailure) != 2 || retries != 2 {
			t.Errorf("observer: %d failures, %d retries; want 2, 2", obs.get(watcher.ResultFailure), retries)
		}
		if !strings.Contains(r.logs.String(), "containerd unavailable") {
			t.Error("failure cause not logged")
		}
	})
	t.Run("at once when the file changes", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		path := filepath.Join(dir, "a.tar")
		put(t, path, "broken")
		p := &fakeProc{fn: func(_ context.Context, path string, _ int) (watcher.Outcome, error) {
			if b, _ := os.ReadFile(path); string(b) == "broken" {
				return watcher.Outcome{}, errors.New("truncated archive")
			}
			return watcher.Outcome{Images: []string{"img/a"}}, nil
		}}
		cfg := testConfig(t, dir)
		cfg.RetryMin, cfg.RetryMax = time.Hour, time.Hour
		r := start(t, cfg, p, &fakeImages{}, nil)
		f := r.waitState(t, "a.tar", watcher.StateFailed)
		if !strings.Contains(f.Error, "truncated archive") {
			t.Errorf("error = %q, want the cause", f.Error)
		}
		moveIn(t, path, "fixed")
		r.waitState(t, "a.tar", watcher.StateDone)
	})
	t.Run("dropped when the file goes", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		path := filepath.Join(dir, "a.tar")
		put(t, path, "broken")
		p := &fakeProc{fn: func(context.Context, string, int) (watcher.Outcome, error) {
			return watcher.Outcome{}, errors.New("bad archive")
		}}
		cfg := testConfig(t, dir)
		cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 50*time.Millisecond
		r := start(t, cfg, p, &fakeImages{}, nil)
		waitFor(t, "two attempts", func() bool { return p.count(path) >= 2 })
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "file forgotten", func() bool { _, ok := r.file("a.tar"); return !ok })
		n := p.count(path)
		// Retries come every 50ms: the marker failing three times shows that
		// retry time passed, with the gone file left alone.
		moveIn(t, filepath.Join(dir, "marker.tar"), "m")
		waitFor(t, "marker retried", func() bool { return p.count(filepath.Join(dir, "marker.tar")) >= 3 })
		if got := p.count(path); got != n {
			t.Errorf("gone file processed %d more times", got-n)
		}
	})
}

// TestChangedDuringImport checks that a job whose file is replaced or
// removed while it runs is cancelled at once, with the cause, and that the
// new file is then processed, or the gone one forgotten, without a failure
// counted.
func TestChangedDuringImport(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		change    func(t *testing.T, path string)
		wantCause string
	}{
		{"replaced", func(t *testing.T, path string) { moveIn(t, path, "v2") }, "the file changed during its job"},
		{"removed", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, "the file went away during its job"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "a.tar")
			put(t, path, "v1")
			started := make(chan struct{})
			cause := make(chan error, 1)
			p := &fakeProc{fn: func(ctx context.Context, _ string, n int) (watcher.Outcome, error) {
				if n == 1 {
					close(started)
					<-ctx.Done() // a long import, until cancelled
					cause <- context.Cause(ctx)
					return watcher.Outcome{}, ctx.Err()
				}
				return watcher.Outcome{Images: []string{"img/a"}}, nil
			}}
			obs := &countObs{}
			r := start(t, testConfig(t, dir), p, &fakeImages{}, obs)
			<-started
			tt.change(t, path)
			select {
			case err := <-cause:
				if err == nil || err.Error() != tt.wantCause {
					t.Errorf("job cancelled with cause %v, want %q", err, tt.wantCause)
				}
			case <-time.After(waitTimeout):
				t.Fatal("the job was not cancelled")
			}
			if tt.name == "replaced" {
				r.waitState(t, "a.tar", watcher.StateDone)
				if calls := p.all(); len(calls) != 2 || calls[1].data != "v2" {
					t.Errorf("calls = %+v, want a second one that saw v2", calls)
				}
			} else {
				waitFor(t, "a.tar forgotten", func() bool { _, ok := r.file("a.tar"); return !ok })
			}
			if n := obs.get(watcher.ResultFailure); n != 0 {
				t.Errorf("%d failures counted for a cancelled job, want 0", n)
			}
			p.mu.Lock()
			overlap := p.overlap
			p.mu.Unlock()
			if overlap {
				t.Error("a file was processed twice at once")
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		grace      time.Duration
		job        func(ctx context.Context) error
		wantJobErr error
	}{
		{"running job finishes within grace", 5 * time.Second, func(ctx context.Context) error {
			time.Sleep(300 * time.Millisecond) // a job that ignores cancellation
			return ctx.Err()
		}, nil},
		{"running job cancelled after grace", 200 * time.Millisecond, func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			put(t, filepath.Join(dir, "long.tar"), "x")
			started := make(chan struct{})
			jobErr := make(chan error, 1)
			p := &fakeProc{fn: func(ctx context.Context, _ string, _ int) (watcher.Outcome, error) {
				close(started)
				err := tt.job(ctx)
				jobErr <- err
				return watcher.Outcome{}, err
			}}
			cfg := testConfig(t, dir)
			cfg.Grace = tt.grace
			r := start(t, cfg, p, &fakeImages{}, nil)
			<-started
			begin := time.Now()
			if err := r.stop(); err != nil {
				t.Fatalf("Run = %v, want nil", err)
			}
			took := time.Since(begin)
			t.Logf("Run returned %s after cancel", took)
			if tt.wantJobErr != nil && took < tt.grace {
				t.Errorf("job cancelled after %s, before the grace of %s", took, tt.grace)
			}
			select {
			case err := <-jobErr:
				if !errors.Is(err, tt.wantJobErr) && err != tt.wantJobErr {
					t.Errorf("job ctx error = %v, want %v", err, tt.wantJobErr)
				}
			default:
				t.Error("Run returned before the job ended")
			}
			if n := len(p.all()); n != 1 {
				t.Errorf("Process called %d times, want 1", n)
			}
		})
	}
}

func TestCorruptStateFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	put(t, filepath.Join(dir, "a.tar"), "a")
	put(t, filepath.Join(dir, "b.txt"), "b")
	cfg := testConfig(t, dir)
	if err := os.MkdirAll(filepath.Dir(cfg.StateFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.StateFile, []byte(`{"version":1,"files":{`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &fakeProc{}
	r := start(t, cfg, p, &fakeImages{}, nil)
	waitFor(t, "ready", r.w.Ready)
	if n := len(p.all()); n != 2 {
		t.Errorf("processed %d files, want 2", n)
	}
	if logs := r.logs.String(); !strings.Contains(logs, "level=WARN msg=state_unusable_starting_empty") {
		t.Errorf("no warning about the state file in:\n%s", logs)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Errorf("state file not rewritten as JSON: %v", err)
	}
}

// TestRescanDirs watches a directory by rescans only, as for a network
// filesystem: new, changed and removed files are found within the interval,
// and a file whose job outlasts several rescans is not processed again.
func TestRescanDirs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	put(t, filepath.Join(dir, "a.tar"), "a")
	cfg := testConfig(t, dir)
	cfg.Dirs, cfg.RescanDirs = nil, []string{dir}
	cfg.Rescan = 30 * time.Millisecond
	release := make(chan struct{})
	p := &fakeProc{fn: func(ctx context.Context, path string, _ int) (watcher.Outcome, error) {
		if filepath.Base(path) == "slow.tar" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return watcher.Outcome{Images: []string{"img/" + filepath.Base(path)}}, nil
	}}
	img := &fakeImages{}
	obs := &countObs{}
	r := start(t, cfg, p, img, obs)
	r.waitState(t, "a.tar", watcher.StateDone)
	if d := r.w.Status().Dirs; len(d) != 1 || d[0].Mode != watcher.ModeRescan || d[0].Degraded != "" {
		t.Errorf("dirs = %+v, want one rescanned by configuration, not degraded", d)
	}

	moveIn(t, filepath.Join(dir, "slow.tar"), "s")
	r.waitState(t, "slow.tar", watcher.StateRunning)
	n := obs.rescanned()
	waitFor(t, "rescans while the job runs", func() bool { return obs.rescanned() >= n+3 })
	close(release)
	r.waitState(t, "slow.tar", watcher.StateDone)

	moveIn(t, filepath.Join(dir, "a.tar"), "changed")
	waitFor(t, "a.tar processed again", func() bool { return p.count(filepath.Join(dir, "a.tar")) == 2 })
	if err := os.Remove(filepath.Join(dir, "a.tar")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a.tar unpinned", func() bool { return len(img.unpins()) > 0 })
	if got, skips := p.count(filepath.Join(dir, "slow.tar")), obs.get(watcher.ResultSkipped); got != 1 || skips != 0 {
		t.Errorf("slow.tar processed %d times and skipped %d, want once and never", got, skips)
	}
}

// permanentErr is an error of a bad file, as the importer's are.
type permanentErr struct{}

func (permanentErr) Error() string   { return "manifest.json: not JSON" }
func (permanentErr) Permanent() bool { return true }

// TestInvalidFileWaitsForChange checks that a file that failed for good is
// not retried on a timer, says so in Status, and is processed again once it
// changes.
func TestInvalidFileWaitsForChange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.tar")
	put(t, path, "bad")
	p := &fakeProc{fn: func(_ context.Context, path string, n int) (watcher.Outcome, error) {
		if n == 1 {
			return watcher.Outcome{}, fmt.Errorf("import %s: %w", path, permanentErr{})
		}
		return watcher.Outcome{Images: []string{"img/bad"}}, nil
	}}
	obs := &countObs{}
	cfg := testConfig(t, dir)
	r := start(t, cfg, p, &fakeImages{}, obs)
	f := r.waitState(t, "bad.tar", watcher.StateFailed)
	if !f.Invalid || !strings.Contains(f.Error, "not JSON") {
		t.Errorf("status = %+v, want failed, invalid, with the cause", f)
	}
	if _, retries := obs.counts(); retries != 0 {
		t.Errorf("%d retries scheduled for an invalid file, want none", retries)
	}
	// A valid failure would be retried within RetryMax; the invalid one
	// waits for a change however long that takes.
	failures := obs.get(watcher.ResultFailure)
	moveIn(t, path, "fixed")
	f = r.waitState(t, "bad.tar", watcher.StateDone)
	if got := p.count(path); got != 2 || f.Invalid || failures != 1 {
		t.Errorf("processed %d times (failures counted %d), status %+v; want 2, 1, not invalid", got, failures, f)
	}
}

// TestStuckJobAbandoned checks that shutdown completes even if a job ignores
// its cancellation: after the grace and abandonAfter, Run saves the state and
// returns an error saying work was abandoned.
func TestStuckJobAbandoned(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	put(t, filepath.Join(dir, "stuck.tar"), "s")
	put(t, filepath.Join(dir, "ok.tar"), "o")
	unstick := make(chan struct{})
	t.Cleanup(func() { close(unstick) }) // after Run returned: the worker is gone
	p := &fakeProc{fn: func(_ context.Context, path string, _ int) (watcher.Outcome, error) {
		if filepath.Base(path) == "stuck.tar" {
			<-unstick // deaf to its context, as a read blocked in the kernel is
		}
		return watcher.Outcome{Images: []string{"img/" + filepath.Base(path)}}, nil
	}}
	cfg := testConfig(t, dir)
	cfg.Grace = 50 * time.Millisecond
	r := start(t, cfg, p, &fakeImages{}, nil)
	r.waitState(t, "ok.tar", watcher.StateDone)
	r.waitState(t, "stuck.tar", watcher.StateRunning)
	err := r.stop()
	r.err = nil // checked here, not by start's cleanup
	if err == nil || !strings.Contains(err.Error(), "1 job(s) did not stop") {
		t.Fatalf("Run = %v, want an error saying a job was abandoned", err)
	}
	b, rerr := os.ReadFile(cfg.StateFile)
	if rerr != nil || !strings.Contains(string(b), "ok.tar") {
		t.Errorf("state file after an abandoned job: %v, %q; want it saved with ok.tar", rerr, b)
	}
}

// TestStateSaveFailureIsVisible checks that a state file that cannot be
// written does not stop imports, and is shown in Status, counted, and
// reported by Run at shutdown.
func TestStateSaveFailureIsVisible(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	put(t, filepath.Join(dir, "a.tar"), "a")
	blocker := filepath.Join(t.TempDir(), "file")
	put(t, blocker, "not a directory")
	cfg := testConfig(t, dir)
	cfg.StateFile = filepath.Join(blocker, "state.json")
	obs := &countObs{}
	r := start(t, cfg, &fakeProc{}, &fakeImages{}, obs)
	r.waitState(t, "a.tar", watcher.StateDone)
	waitFor(t, "state error in status", func() bool { return r.w.Status().StateError != "" })
	if n := obs.saveFailures(); n == 0 {
		t.Error("no state save failure counted")
	}
	err := r.stop()
	r.err = nil
	if err == nil || !strings.Contains(err.Error(), "save state") {
		t.Errorf("Run = %v, want the final save's error", err)
	}
}

// TestStalledJob checks that a job that makes no progress for StallAfter
// fails Healthy and is marked in Status, while a job that reports progress
// keeps the watcher healthy however long it runs.
func TestStalledJob(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	put(t, filepath.Join(dir, "busy.tar"), "b")
	put(t, filepath.Join(dir, "wedged.tar"), "w")
	release := make(chan struct{})
	cfg := testConfig(t, dir)
	cfg.StallAfter = 300 * time.Millisecond
	procFn := func(ctx context.Context, f watcher.File) (watcher.Outcome, error) {
		if filepath.Base(f.Path) == "busy.tar" {
			tick := time.NewTicker(cfg.StallAfter / 10)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					f.Progress()
				case <-release:
					return watcher.Outcome{}, nil
				}
			}
		}
		select { // no progress at all
		case <-release:
		case <-ctx.Done():
		}
		return watcher.Outcome{}, nil
	}
	r := start(t, cfg, procFunc(procFn), &fakeImages{}, nil)
	w := r.w
	r.waitState(t, "busy.tar", watcher.StateRunning)
	r.waitState(t, "wedged.tar", watcher.StateRunning)
	waitFor(t, "unhealthy", func() bool { return w.Healthy() != nil })
	if err := w.Healthy(); !strings.Contains(err.Error(), "wedged.tar made no progress") {
		t.Errorf("Healthy() = %v, want it to name the wedged job", err)
	}
	for _, tt := range []struct {
		path    string
		stalled bool
	}{{"busy.tar", false}, {"wedged.tar", true}} {
		f, _ := r.file(tt.path)
		if f.Stalled != tt.stalled || f.ProgressAt.IsZero() {
			t.Errorf("%s: stalled %v, progress at %v; want stalled %v with a time", tt.path, f.Stalled, f.ProgressAt, tt.stalled)
		}
	}
	close(release)
	r.waitState(t, "wedged.tar", watcher.StateDone)
	if err := w.Healthy(); err != nil {
		t.Errorf("Healthy() after the jobs ended = %v, want nil", err)
	}
}

// procFunc turns a function into a Processor.
type procFunc func(ctx context.Context, f watcher.File) (watcher.Outcome, error)

func (fn procFunc) Process(ctx context.Context, f watcher.File) (watcher.Outcome, error) {
	return fn(ctx, f)
}

// TestUntrustedEntries checks what the watcher makes of entries that are not
// plain files: a symlink out of the directory is handed on (for the
// Processor to refuse) with nothing of its target shown, a symlink within is
// followed, and a FIFO is handed on too — the watcher itself never opens one.
func TestUntrustedEntries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(t.TempDir(), "shadow")
	put(t, secret, strings.Repeat("s", 12345))
	put(t, filepath.Join(dir, "real.tar"), "twelve bytes")
	for link, target := range map[string]string{"out.txt": secret, "in.tar": "real.tar"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.tar"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &fakeProc{}
	r := start(t, testConfig(t, dir), p, &fakeImages{}, nil)
	waitFor(t, "ready", r.w.Ready)
	for _, name := range []string{"out.txt", "in.tar", "pipe.tar", "real.tar"} {
		if p.count(filepath.Join(dir, name)) != 1 {
			t.Errorf("%s handed to the Processor %d times, want once", name, p.count(filepath.Join(dir, name)))
		}
	}
	if f, _ := r.file("out.txt"); f.Size == 12345 {
		t.Errorf("status of a link out of the directory shows its target's size %d", f.Size)
	}
	if f, _ := r.file("in.tar"); f.Size != int64(len("twelve bytes")) {
		t.Errorf("status of a link within the directory: size %d, want its target's %d", f.Size, len("twelve bytes"))
	}
}

// TestCompanionRerunsItsFile checks that a companion file (a signature
// beside an archive) is no input of its own, and that its arrival runs its
// file again at once, with the backoff forgotten.
func TestCompanionRerunsItsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "a.tar")
	put(t, path, "a")
	p := &fakeProc{fn: func(_ context.Context, path string, _ int) (watcher.Outcome, error) {
		if _, err := os.Stat(path + ".sig"); err != nil {
			return watcher.Outcome{}, errors.New("no signature for a.tar yet")
		}
		return watcher.Outcome{Images: []string{"img/a"}}, nil
	}}
	cfg := testConfig(t, dir)
	cfg.RetryMin, cfg.RetryMax = time.Hour, time.Hour // only the companion can bring it back
	cfg.Companion = func(p string) (string, bool) {
		if f, ok := strings.CutSuffix(p, ".sig"); ok {
			return f, true
		}
		return "", false
	}
	r := start(t, cfg, p, &fakeImages{}, nil)
	r.waitState(t, "a.tar", watcher.StateFailed)
	moveIn(t, path+".sig", "signature")
	r.waitState(t, "a.tar", watcher.StateDone)
	if _, ok := r.file("a.tar.sig"); ok {
		t.Error("the companion is in Status as a file of its own")
	}
	if n := p.count(path + ".sig"); n != 0 {
		t.Errorf("the companion was processed %d times, want never", n)
	}
}
