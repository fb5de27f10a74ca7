package watcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// maxDrain bounds how many ready fsnotify events are handled before due
// deadlines, so that a flood cannot starve the timers.
const maxDrain = 4096

// loop is the state of one Run: what the directories hold, what was
// recorded, and the queue. Only the Run goroutine touches it, holding
// Watcher.mu.
type loop struct {
	w   *Watcher
	fsw *fsnotify.Watcher
	q   *queue

	recs    map[string]*record  // what the state file remembers, by path
	pend    map[string]*pending // files waiting to be complete (settle.go)
	watched map[string]struct{} // directories watched inside the watched dirs

	jobs      chan job
	results   chan result
	abandoned chan struct{}                      // closed when shutdown gives up on stuck jobs
	aborts    map[string]context.CancelCauseFunc // cancels the running job of a path

	starting    bool // within the startup walk
	outstanding int  // files of the startup walk not yet dealt with

	rescanAt   time.Time // when the rescanned directories are walked next (rescan.go)
	scanFailed bool      // a watch failed during the current scan

	dirty   bool
	saveAt  time.Time
	changed bool // records or file states changed since the last report

	lastQueued int
}

// Run watches the directories and processes files until ctx is cancelled.
// Then it stops taking new jobs, lets running ones finish within
// Config.Grace, cancels them, saves the state and returns nil. Run may be
// called once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("watcher: Run called twice")
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("start fsnotify: %w", err)
	}
	defer fsw.Close()

	st, err := loadState(w.cfg.StateFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		w.log.Info("state_missing_starting_empty", "path", w.cfg.StateFile)
	case err != nil:
		w.log.Warn("state_unusable_starting_empty", "path", w.cfg.StateFile, "err", err)
	}
	l := newLoop(w, fsw, st)

	// Jobs get a context that outlives ctx, cancelled only after the grace.
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	var wg sync.WaitGroup
	for range w.cfg.Workers {
		wg.Go(func() {
			for j := range l.jobs {
				r := w.do(jobCtx, j)
				select {
				case l.results <- r:
				case <-l.abandoned:
					return
				}
			}
		})
	}
	workersDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(workersDone)
	}()

	w.beat.Store(time.Now().UnixNano())
	w.alive.Store(true)
	defer w.alive.Store(false)

	w.mu.Lock()
	l.start()
	w.mu.Unlock()

	runErr := l.run(ctx, jobCtx)
	return errors.Join(runErr, l.shutdown(cancelJobs, workersDone))
}

func newLoop(w *Watcher, fsw *fsnotify.Watcher, st *state) *loop {
	l := &loop{
		w:         w,
		fsw:       fsw,
		q:         w.q,
		recs:      st.Files,
		pend:      map[string]*pending{},
		watched:   map[string]struct{}{},
		jobs:      make(chan job),
		results:   make(chan result),
		abandoned: make(chan struct{}),
		aborts:    map[string]context.CancelCauseFunc{},
		changed:   true,
	}
	l.q.addUnpin(st.Unpin)
	return l
}

// run is the main loop; it returns when ctx is done or fsnotify fails. Jobs
// run under jobCtx.
func (l *loop) run(ctx, jobCtx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	beat := time.NewTicker(heartbeatEvery)
	defer beat.Stop()
	for {
		now := time.Now()
		l.w.beat.Store(now.UnixNano())
		l.w.mu.Lock()
		next, jobs := l.nextJob(jobCtx, now)
		wake := l.nextWake()
		l.report()
		l.w.mu.Unlock()
		if wake.IsZero() {
			timer.Reset(time.Hour)
		} else {
			timer.Reset(max(time.Until(wake), 0))
		}

		select {
		case <-ctx.Done():
			if jobs != nil {
				next.abort(nil)
			}
			return nil
		case ev, ok := <-l.fsw.Events:
			if !ok {
				return errors.New("fsnotify events closed")
			}
			l.w.mu.Lock()
			l.event(ev)
			l.w.mu.Unlock()
		case err, ok := <-l.fsw.Errors:
			if !ok {
				return errors.New("fsnotify errors closed")
			}
			l.w.mu.Lock()
			l.fsError(err)
			l.w.mu.Unlock()
		case jobs <- next:
			l.w.mu.Lock()
			l.dispatched(next)
			l.w.mu.Unlock()
			continue
		case r := <-l.results:
			l.w.mu.Lock()
			l.finished(r)
			l.w.mu.Unlock()
		case <-timer.C:
			l.w.mu.Lock()
			l.drain()
			l.tick(time.Now())
			l.w.mu.Unlock()
		case <-beat.C:
		}
		if jobs != nil {
			next.abort(nil) // not handed out this turn; made again next turn
		}
	}
}

// drain handles the fsnotify events that are already waiting, so that
// deadlines are judged with every known event taken into account.
func (l *loop) drain() {
	for range maxDrain {
		select {
		case ev, ok := <-l.fsw.Events:
			if !ok {
				return
			}
			l.event(ev)
		case err, ok := <-l.fsw.Errors:
			if !ok {
				return
			}
			l.fsError(err)
		default:
			return
		}
	}
}

// tick handles what is due at now: files that may be complete, retries,
// saving the state.
func (l *loop) tick(now time.Time) {
	l.rescanDue(now)
	l.settle(now)
	for _, p := range l.q.retry(now) {
		l.changed = true
		l.w.log.Info("retrying_file", "path", p, "attempt", l.w.files[p].attempts+1)
	}
	if l.dirty && !now.Before(l.saveAt) {
		_ = l.save() // logged, counted and shown; retried
	}
}

// nextWake returns the earliest deadline the loop must wake for, or zero.
func (l *loop) nextWake() time.Time {
	wake := l.settleWake()
	earlier := func(t time.Time) {
		if !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
			wake = t
		}
	}
	earlier(l.q.wake())
	earlier(l.rescanAt)
	if l.dirty {
		earlier(l.saveAt)
	}
	return wake
}

// nextJob returns the job to hand to a worker and the channel to send it on,
// or a nil channel if there is nothing to do now. The images of an unpin job
// that a recorded file still claims are kept pinned and dropped from it.
func (l *loop) nextJob(jobCtx context.Context, now time.Time) (job, chan job) {
	j, ok := l.q.next(now)
	if !ok {
		return job{}, nil
	}
	j.ctx, j.abort = jobCtx, func(error) {}
	if j.unpin == nil {
		j.ctx, j.abort = context.WithCancelCause(jobCtx)
		j.seen = new(atomic.Int64)
		if f := l.w.files[j.path]; f != nil {
			j.root = f.dir
		}
		if r := l.recs[j.path]; r != nil {
			c := *r
			c.Images = slices.Clone(r.Images)
			j.rec = &c
		}
		return j, l.jobs
	}
	claimed := l.claimed()
	var keep []string
	j.unpin = slices.DeleteFunc(j.unpin, func(name string) bool {
		_, ok := claimed[name]
		if ok {
			keep = append(keep, name)
		}
		return ok
	})
	if len(keep) > 0 {
		l.q.keep(keep)
		l.markDirty()
	}
	if len(j.unpin) == 0 {
		return job{}, nil
	}
	return j, l.jobs
}

// dispatched records that a worker took j.
func (l *loop) dispatched(j job) {
	l.q.started(j)
	if j.unpin == nil {
		l.aborts[j.path] = j.abort
		j.seen.Store(time.Now().UnixNano())
		l.w.progress[j.path] = j.seen
		l.w.obs.JobStarted()
	}
}

// Why a running job is cancelled before it ends.
var (
	errFileGone    = errors.New("the file went away during its job")
	errFileChanged = errors.New("the file changed during its job")
)

// abort cancels the running job of path, if there is one, with cause: a job
// whose file went away or changed is of no use any more.
func (l *loop) abort(path string, cause error) {
	if cancel := l.aborts[path]; cancel != nil {
		l.w.log.Info("job_cancelled", "path", path, "cause", cause)
		cancel(cause)
	}
}

// ready is told that the file at path is complete, as st says: it is
// queued.
func (l *loop) ready(path string, st fileStat) {
	f := l.w.files[path]
	if f == nil {
		return
	}
	f.seen = st
	if l.q.state(path).busy() {
		l.abort(path, errFileChanged)
	}
	l.q.ready(path)
}

// report tells the Observer what changed.
func (l *loop) report() {
	if q := l.q.depth(); q != l.lastQueued {
		l.lastQueued = q
		l.w.obs.SetQueueDepth(q)
	}
	if l.changed {
		l.changed = false
		l.w.obs.SetPinnedImages(len(l.claimed()))
		failing, invalid := 0, 0
		for p, f := range l.w.files {
			if f.state(l.q.state(p)) == StateFailed {
				failing++
				if f.invalid {
					invalid++
				}
			}
		}
		l.w.obs.SetFilesFailing(failing, invalid)
	}
}

// fsError handles an error from fsnotify: an overflow means events were
// lost, so everything is scanned again.
func (l *loop) fsError(err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		l.w.log.Warn("events_lost_rescanning", "err", err)
		l.rescan()
		return
	}
	l.w.log.Error("fsnotify_error", "err", err)
}
