package watcher_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/watcher"
)

// slotGate is a fake cluster-wide slot: files of dir are not processed
// while it is closed, as cmd's processor does with a shared-import slot.
type slotGate struct {
	dir   string
	open  atomic.Bool
	tries atomic.Int32
}

func (g *slotGate) process(ctx context.Context, p *fakeProc, f watcher.File) (watcher.Outcome, error) {
	if strings.HasPrefix(f.Path, g.dir+string(filepath.Separator)) {
		g.tries.Add(1)
		if !g.open.Load() {
			return watcher.Outcome{}, &watcher.NotYet{Waiting: "a slot", RetryIn: 20 * time.Millisecond}
		}
	}
	return p.Process(ctx, f)
}

type gatedProc struct {
	g *slotGate
	p *fakeProc
}

func (gp gatedProc) Process(ctx context.Context, f watcher.File) (watcher.Outcome, error) {
	return gp.g.process(ctx, gp.p, f)
}

// TestNotYetGivesBackTheWorker checks that a file whose Processor says "not
// yet" holds no worker while it waits: with one worker, a file dropped into
// another directory meanwhile is processed; the waiting file shows what it
// waits for, is neither an attempt nor a failure, keeps the startup preload
// from completing, and is processed once the gate opens. A waiting file that
// goes away is forgotten.
func TestNotYetGivesBackTheWorker(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	local, shared := filepath.Join(root, "local"), filepath.Join(root, "shared")
	put(t, filepath.Join(shared, "s.tar"), "s")
	put(t, filepath.Join(shared, "gone.tar"), "g")
	put(t, filepath.Join(local, "keep"), "") // so that the directory exists
	cfg := testConfig(t, local)
	cfg.Dirs = append(cfg.Dirs, shared)
	cfg.Workers = 1
	g := &slotGate{dir: shared}
	p := &fakeProc{}
	obs := &countObs{}
	r := start(t, cfg, gatedProc{g, p}, &fakeImages{}, obs)

	waitFor(t, "both shared files tried more than once", func() bool { return g.tries.Load() > 4 })
	for _, rel := range []string{"s.tar", "gone.tar"} {
		f, _ := r.file(rel)
		if f.State != watcher.StateQueued || f.Waiting != "a slot" || f.Attempts != 0 || f.Error != "" {
			t.Errorf("%s while the gate is closed: %+v; want queued, waiting for a slot, no attempt, no error", rel, f)
		}
	}
	if r.w.Ready() {
		t.Error("Ready while files of the startup walk wait")
	}

	moveIn(t, filepath.Join(local, "l.tar"), "l")
	if f := r.waitState(t, "l.tar", watcher.StateDone); f.Waiting != "" {
		t.Errorf("l.tar: %+v; want not waiting", f)
	}
	if f, _ := r.file("s.tar"); f.Waiting == "" || p.count(filepath.Join(shared, "s.tar")) != 0 {
		t.Fatalf("s.tar was processed (or stopped waiting) with the gate closed: %+v", f)
	}

	if err := os.Remove(filepath.Join(shared, "gone.tar")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "gone.tar forgotten", func() bool { _, ok := r.file("gone.tar"); return !ok })

	g.open.Store(true)
	f := r.waitState(t, "s.tar", watcher.StateDone)
	if f.Waiting != "" || f.Attempts != 1 {
		t.Errorf("s.tar after the gate opened: %+v; want done at the first attempt, not waiting", f)
	}
	waitFor(t, "Ready", r.w.Ready)
	if synced, retries := obs.counts(); synced != 1 || retries != 0 {
		t.Errorf("initial sync reported %d times, %d retries; want 1 and 0 (waiting is no failure)", synced, retries)
	}
	if got := obs.get(watcher.ResultFailure); got != 0 {
		t.Errorf("%d failures reported; want none", got)
	}
	if n := strings.Count(r.logs.String(), "msg=file_waiting"); n != 2 {
		t.Errorf("file_waiting logged %d times; want once per waiting file (2)", n)
	}
}
