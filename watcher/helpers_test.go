package watcher_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/imagedrop/imagedrop/watcher"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait; conditions normally hold within milliseconds.
const waitTimeout = 15 * time.Second

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// call is one Process call seen by fakeProc.
type call struct {
	path string
	data string // the file's content when Process started
	at   time.Time
}

// fakeProc records calls; fn, if set, decides the outcome, given the number
// of the call for this path (1-based).
type fakeProc struct {
	mu      sync.Mutex
	calls   []call
	running map[string]int
	overlap bool // a path was processed twice at once
	fn      func(ctx context.Context, path string, n int) (watcher.Outcome, error)
}

func (p *fakeProc) Process(ctx context.Context, f watcher.File) (watcher.Outcome, error) {
	path := f.Path
	at := time.Now()
	var data []byte
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() { // never block on a FIFO
		data, _ = os.ReadFile(path)
	}
	p.mu.Lock()
	if p.running == nil {
		p.running = map[string]int{}
	}
	p.running[path]++
	if p.running[path] > 1 {
		p.overlap = true
	}
	p.calls = append(p.calls, call{path: path, data: string(data), at: at})
	n := 0
	for _, c := range p.calls {
		if c.path == path {
			n++
		}
	}
	fn := p.fn
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.running[path]--
		p.mu.Unlock()
	}()
	if fn != nil {
		return fn(ctx, path, n)
	}
	return watcher.Outcome{Images: []string{"img/" + filepath.Base(path)}}, nil
}

func (p *fakeProc) all() []call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

func (p *fakeProc) count(path string) int {
	n := 0
	for _, c := range p.all() {
		if c.path == path {
			n++
		}
	}
	return n
}

// fakeImages says every image exists unless missing is set, and records unpins.
type fakeImages struct {
	mu       sync.Mutex
	missing  bool
	unpinned [][]string
}

func (f *fakeImages) Exist(context.Context, []string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.missing, nil
}

func (f *fakeImages) Unpin(_ context.Context, names []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unpinned = append(f.unpinned, slices.Clone(names))
	return nil
}

func (f *fakeImages) unpins() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.unpinned)
}

// countObs counts what the Observer is told.
type countObs struct {
	watcher.Nop
	mu      sync.Mutex
	results map[string]int
	retries int
	synced  int
	rescans int
	saves   int
}

func (o *countObs) StateSaveFailed() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.saves++
}

func (o *countObs) saveFailures() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.saves
}

func (o *countObs) Rescanned() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rescans++
}

func (o *countObs) rescanned() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rescans
}

func (o *countObs) FileProcessed(_, result string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.results == nil {
		o.results = map[string]int{}
	}
	o.results[result]++
}

func (o *countObs) Retried() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.retries++
}

func (o *countObs) InitialSyncComplete() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.synced++
}

func (o *countObs) counts() (synced, retries int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.synced, o.retries
}

func (o *countObs) get(result string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.results[result]
}

// syncBuffer collects log output safely.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testConfig returns a config with short delays, watching dir.
func testConfig(t *testing.T, dir string) watcher.Config {
	cfg := watcher.DefaultConfig()
	cfg.Dirs = []string{dir}
	cfg.Match = watcher.MatchForTest
	cfg.StateFile = filepath.Join(t.TempDir(), "state", "state.json")
	cfg.Settle = 150 * time.Millisecond
	cfg.RetryMin = 10 * time.Millisecond
	cfg.RetryMax = 80 * time.Millisecond
	cfg.Grace = 5 * time.Second
	return cfg
}

// running is a Watcher running in the background.
type running struct {
	w      *watcher.Watcher
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// start runs a Watcher until the test ends or stop is called.
func start(t *testing.T, cfg watcher.Config, p watcher.Processor, img watcher.Images, obs watcher.Observer) *running {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := watcher.New(cfg, log, p, img, obs)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("watcher log:\n%s", logs.String())
		}
	})
	return r
}

// stop cancels Run and waits for it to return.
func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(waitTimeout):
			r.err = errors.New("Run did not return")
		}
	})
	return r.err
}

// file returns the status of the file at rel, if the watcher knows it.
func (r *running) file(rel string) (watcher.FileStatus, bool) {
	for _, f := range r.w.Status().Files {
		if f.Path == rel {
			return f, true
		}
	}
	return watcher.FileStatus{}, false
}

// waitState waits until the file at rel is in state.
func (r *running) waitState(t *testing.T, rel, state string) watcher.FileStatus {
	t.Helper()
	var got watcher.FileStatus
	waitFor(t, rel+" "+state, func() bool {
		var ok bool
		got, ok = r.file(rel)
		return ok && got.State == state
	})
	return got
}

// old is an mtime well in the past, for files that were "there before".
var old = time.Now().Add(-time.Hour)

// put writes a file as if it had been there for a while.
func put(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// moveIn writes data elsewhere on the same filesystem and renames it to path.
func moveIn(t *testing.T, path, data string) time.Time {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), filepath.Base(path)) // same filesystem
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return at
}
