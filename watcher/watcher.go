// Package watcher finds container-image archives and image lists in
// directories and hands each one, once it is complete, to a Processor.
//
// At start every directory is walked (subdirectories included) and every
// supported file is queued in lexical order; fsnotify then reports changes.
// Each file has one entry in a queue served by a pool of workers: a file is
// never processed twice at once, a change during its job queues it again
// after the job, and a failed job is retried with exponential backoff until it
// succeeds, the file changes (retried at once) or the file goes away. What was
// done for which file is kept in a state file, so that a restart skips files
// that did not change and whose images still exist. When a file goes away, or
// a list stops producing an image, the images that no present file produces
// are unpinned (never deleted).
//
// Unpinning runs only while no job runs, and only for images that no recorded
// file claims at that moment, so it never races an import that pins the same
// image; a failed job keeps the images it had, since a list reference that
// failed this time may still be wanted.
//
// A Processor that cannot process a file yet (it waits for a cluster-wide
// slot) returns NotYet: the file gives its worker back and is tried again
// later, so that it never holds up the other files.
//
// The watcher knows nothing of containerd: it calls a Processor and an Images
// it declares itself, and reports to an Observer.
//
// # When is a file complete?
//
// fsnotify v1.10 does not export close-write, so completeness is judged from
// Create, Write and Chmod events and from stat:
//
//   - A file that appears by rename (mv, rsync's final step, a ConfigMap
//     symlink) shows as Create and is never followed by Write. On Create the
//     file is statted and probed for 40 ms (probeWindow); if no Write
//     or Chmod arrived, its size is not zero and its size and mtime did not
//     change across the window, it is complete and queued at once.
//   - A file written in place (cp, curl -o, a slow writer) produces Write
//     events, or is empty at the end of the probe. It then settles: every
//     Write pushes its deadline to Settle from now, and when the deadline
//     passes the file must still have the size and mtime seen at the last
//     event, else it settles again. Writers that pause for less than Settle
//     are therefore imported once, after they finish.
//   - Files found by a walk are queued at once unless their mtime is within
//     Settle of now (perhaps still being written), in which case they settle.
//
// A writer that stalls for longer than Settle is taken as finished; the
// import then fails, and the file is tried again once it settles anew.
//
// Pending events are always handled before deadlines are checked, so a Write
// that is already queued is never missed.
package watcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Processor does the work for one file (import an archive, or pull a list).
type Processor interface {
	// Process handles f. It may return a partial Outcome with an error, such
	// as a list where some references succeeded. An error whose chain has a
	// method Permanent() bool returning true says the file is bad: it is
	// retried only when it changes.
	Process(ctx context.Context, f File) (Outcome, error)
}

// File is a file handed to the Processor.
type File struct {
	// Path is the file, found in the watched directory Root. What the
	// directory holds is untrusted: the Processor must not follow a symlink
	// out of Root.
	Root, Path string
	// Progress is to be called whenever the job makes progress (a chunk
	// read, a reference pulled). A job that does not call it for
	// Config.StallAfter is reported stalled by Healthy and Status.
	Progress func()
}

// Outcome is what a successful or failed job produced.
type Outcome struct {
	// Images are the names of the images the file produced.
	Images []string
	// Bytes is how much of the file was read, for the log.
	Bytes int64
	// Detail is shown in Status as is, e.g. per-reference results of a list;
	// it must be JSON-encodable.
	Detail any
}

// Images is the subset of the image store the watcher needs for state checks
// and pins.
type Images interface {
	// Exist reports whether all the named images are present.
	Exist(ctx context.Context, names []string) (bool, error)
	// Unpin removes the pin from the named images; it never deletes them.
	Unpin(ctx context.Context, names []string) error
}

// How the loop keeps itself alive and observable.
const (
	heartbeatEvery = 5 * time.Second
	staleAfter     = time.Minute
)

// Watcher watches directories and processes the files that appear in them.
type Watcher struct {
	cfg  Config
	dirs []string // absolute and clean, in configuration order
	// rescanned are the dirs of Config.RescanDirs, found by rescans only.
	rescanned map[string]bool
	log       *slog.Logger
	proc      Processor
	img       Images
	obs       Observer

	started atomic.Bool
	alive   atomic.Bool
	beat    atomic.Int64 // unix nanoseconds of the loop's last turn

	// progress holds, for each running file job, the unix nanoseconds of
	// its last progress; guarded by mu, the values written by the jobs.
	progress map[string]*atomic.Int64

	// mu guards the fields below. The loop holds it while it handles one
	// event, so Status sees a consistent picture.
	mu    sync.Mutex
	files map[string]*file
	q     *queue
	blind map[string]string // dirs rescanned because a watch failed, and why
	// saveErr is why the state file could not be written last time, or "".
	saveErr string
	ready   bool
}

// New returns a Watcher for cfg. obs may be nil.
func New(cfg Config, log *slog.Logger, p Processor, img Images, obs Observer) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("watcher config: %w", err)
	}
	if log == nil || p == nil || img == nil {
		return nil, errors.New("watcher: logger, processor and images are required")
	}
	if obs == nil {
		obs = Nop{}
	}
	w := &Watcher{
		cfg:      cfg,
		log:      log,
		proc:     p,
		img:      img,
		obs:      obs,
		files:    map[string]*file{},
		blind:    map[string]string{},
		progress: map[string]*atomic.Int64{},
		q:        newQueue(cfg.Workers, Backoff{Min: cfg.RetryMin, Max: cfg.RetryMax}.Delay),
	}
	w.rescanned = map[string]bool{}
	for i, d := range append(slices.Clip(cfg.Dirs), cfg.RescanDirs...) {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("watcher dir %q: %w", d, err)
		}
		w.dirs = append(w.dirs, abs)
		if i >= len(cfg.Dirs) {
			w.rescanned[abs] = true
		}
	}
	if cfg.StateFile != "" {
		abs, err := filepath.Abs(cfg.StateFile)
		if err != nil {
			return nil, fmt.Errorf("watcher state file %q: %w", cfg.StateFile, err)
		}
		w.cfg.StateFile = abs
	}
	return w, nil
}

// Healthy returns an error if the loop is not running or has not turned for
// longer than it should.
func (w *Watcher) Healthy() error {
	if !w.alive.Load() {
		return errors.New("watcher is not running")
	}
	if age := time.Since(time.Unix(0, w.beat.Load())); age > staleAfter {
		return fmt.Errorf("watcher loop stalled for %s", age.Round(time.Second))
	}
	if path, age := w.stalled(); path != "" {
		return fmt.Errorf("the job of %s made no progress for %s (stall timeout %s)", path, age.Round(time.Second), w.cfg.StallAfter)
	}
	return nil
}

// stalled returns the running job that made no progress for the longest,
// if that is longer than Config.StallAfter, and for how long.
func (w *Watcher) stalled() (string, time.Duration) {
	if w.cfg.StallAfter <= 0 {
		return "", 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var worst string
	var age time.Duration
	for p, at := range w.progress {
		if a := time.Since(time.Unix(0, at.Load())); a > w.cfg.StallAfter && a > age {
			worst, age = p, a
		}
	}
	return worst, age
}

// Ready reports whether every file found at start has been processed,
// successfully or not, or skipped as unchanged.
func (w *Watcher) Ready() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ready
}

// Status is what the watcher knows, for operators.
type Status struct {
	Ready bool `json:"ready"`
	// StateError says why the state file could not be saved the last time
	// it was tried; imports go on, but a restart would redo their work.
	StateError string       `json:"state_error,omitempty"`
	Dirs       []DirStatus  `json:"dirs"`
	Files      []FileStatus `json:"files"`
}

// How a directory is watched, in DirStatus.
const (
	ModeInotify = "inotify" // fsnotify events
	ModeRescan  = "rescan"  // walked every Config.Rescan
)

// DirStatus is how one watched directory is watched.
type DirStatus struct {
	Path string `json:"path"`
	// Mode is ModeInotify or ModeRescan.
	Mode string `json:"mode"`
	// Degraded says why a directory meant for inotify is rescanned.
	Degraded string `json:"degraded,omitempty"`
}

// Degraded returns, if some directory meant for inotify is rescanned because
// a watch could not be added, a short sentence saying which and why; else
// "".
func (w *Watcher) Degraded() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.blind) == 0 {
		return ""
	}
	dirs := slices.Sorted(maps.Keys(w.blind))
	return fmt.Sprintf("rescanning %d dir(s) every %s, inotify watch failed: %s", len(dirs), w.cfg.Rescan, w.blind[dirs[0]])
}

// States of a file in FileStatus.
const (
	StateQueued  = "queued" // waiting to be complete, for a worker, or for what NotYet said
	StateRunning = "running"
	StateDone    = "done"
	StateFailed  = "failed" // a retry is scheduled
)

// FileStatus is what the watcher knows of one file.
type FileStatus struct {
	// Path is relative to the watched directory the file is in.
	Path string `json:"path"`
	// Kind is KindArchive or KindList.
	Kind string `json:"kind"`
	// State is StateQueued, StateRunning, StateDone or StateFailed.
	State string `json:"state"`
	// Attempts is how many times this run processed the file; a file
	// skipped as unchanged has none.
	Attempts int `json:"attempts"`
	// Images are the images the file produced, as last recorded.
	Images []string `json:"images"`
	// Error is the cause of the last failure.
	Error string `json:"error,omitempty"`
	// Invalid says the last failure was the file's fault (it does not
	// parse, a limit was hit): it is retried only when it changes, not on a
	// timer as failures of the node are.
	Invalid bool `json:"invalid,omitempty"`
	// Waiting says what the file waits for before it can be processed, as
	// the Processor's NotYet said ("a shared-import slot"); it holds no
	// worker meanwhile.
	Waiting string `json:"waiting,omitempty"`
	Size    int64  `json:"size"`
	// Updated is when the file was last processed.
	Updated time.Time `json:"updated,omitzero"`
	// DurationSeconds is how long the last processing took.
	DurationSeconds float64 `json:"duration_seconds,omitzero"`
	// ProgressAt is when the running job last made progress; Stalled says
	// that was longer than Config.StallAfter ago.
	ProgressAt time.Time `json:"progress_at,omitzero"`
	Stalled    bool      `json:"stalled,omitempty"`
	// Detail is the Outcome.Detail of the last processing.
	Detail any `json:"detail,omitempty"`
}

// Status returns a snapshot of the watcher's files, sorted by path.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	paths := make([]string, 0, len(w.files))
	for p := range w.files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	s := Status{Ready: w.ready, StateError: w.saveErr, Files: make([]FileStatus, 0, len(paths))}
	for _, d := range w.dirs {
		ds := DirStatus{Path: d, Mode: ModeInotify, Degraded: w.blind[d]}
		if w.rescanned[d] || ds.Degraded != "" {
			ds.Mode = ModeRescan
		}
		s.Dirs = append(s.Dirs, ds)
	}
	for _, p := range paths {
		fs := w.files[p].status(w.q.state(p))
		if at := w.progress[p]; at != nil {
			fs.ProgressAt = time.Unix(0, at.Load())
			fs.Stalled = w.cfg.StallAfter > 0 && time.Since(fs.ProgressAt) > w.cfg.StallAfter
		}
		s.Files = append(s.Files, fs)
	}
	return s
}

// file is the watcher's knowledge of one present file, for Status; where it
// stands in the queue is the queue's.
type file struct {
	path string // absolute
	dir  string // the watched directory it is in
	kind string

	last     string // StateDone or StateFailed once processed, else ""
	invalid  bool   // the last failure was permanent: the file is bad
	waiting  string // what the file waits for (NotYet), or ""
	attempts int
	images   []string
	err      string
	size     int64
	updated  time.Time
	duration time.Duration
	detail   any

	seen    fileStat // as last found complete (so a rescan that finds it so again does nothing)
	initial bool     // found by the startup walk and not yet dealt with
}

// state is what Status shows of the file, given its queue entry.
func (f *file) state(s entryState) string {
	switch {
	case s.busy():
		return StateRunning
	case s == entryQueued || s == entryWaiting || f.last == "":
		return StateQueued
	case s == entryRetry:
		return StateFailed
	}
	return f.last
}

func (f *file) status(s entryState) FileStatus {
	rel, err := filepath.Rel(f.dir, f.path)
	if err != nil {
		rel = f.path
	}
	images := f.images
	if images == nil {
		images = []string{}
	}
	return FileStatus{
		Path:            filepath.ToSlash(rel),
		Kind:            f.kind,
		State:           f.state(s),
		Attempts:        f.attempts,
		Images:          slices.Clone(images),
		Error:           f.err,
		Invalid:         f.invalid,
		Waiting:         f.waiting,
		Size:            f.size,
		Updated:         f.updated,
		DurationSeconds: f.duration.Seconds(),
		Detail:          f.detail,
	}
}
