package watcher

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// job is one unit of work for a worker: a file to process, or images to
// unpin. It is a message handed over once, and its ctx is the lifetime of
// that one job (as a request's is), cancelled by abort when the file goes
// away or changes.
type job struct {
	ctx   context.Context
	abort context.CancelCauseFunc
	path  string
	root  string        // the watched directory path is in
	seen  *atomic.Int64 // unix nanoseconds of the job's last progress
	rec   *record       // what was recorded for path, if anything (a copy)
	unpin []string      // set for an unpin job
}

// result is what a worker made of a job.
type result struct {
	job
	stat    fileStat
	statErr error
	skipped bool
	out     Outcome
	err     error
	dur     time.Duration
}

// do runs one job; it is called by a worker, and touches nothing of the
// loop's.
func (w *Watcher) do(_ context.Context, j job) (r result) {
	ctx := j.ctx
	r.job = j
	if j.unpin != nil {
		r.err = w.img.Unpin(ctx, j.unpin)
		return r
	}
	r.stat, r.statErr = statFile(j.root, j.path)
	if r.statErr != nil {
		return r
	}
	if j.rec != nil && j.rec.Result == ResultSuccess && j.rec.same(r.stat) {
		ok, err := w.img.Exist(ctx, j.rec.Images)
		switch {
		case err != nil:
			w.log.Warn("image_check_failed", "path", j.path, "err", err)
		case ok:
			r.skipped = true
			return r
		}
	}
	start := time.Now()
	defer func() {
		r.dur = time.Since(start)
		if v := recover(); v != nil {
			r.err = fmt.Errorf("process %s: panic: %v", j.path, v)
		}
	}()
	progress := func() { j.seen.Store(time.Now().UnixNano()) }
	r.out, r.err = w.proc.Process(ctx, File{Root: j.root, Path: j.path, Progress: progress})
	return r
}
