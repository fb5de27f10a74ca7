package watcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"slices"
	"time"
)

// job is one unit of work for a worker: a file to process, or images to
// unpin.
type job struct {
	path  string
	rec   *record  // what was recorded for path, if anything (a copy)
	unpin []string // set for an unpin job
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

// submit puts path in the queue unless it is there already; a running file
// is queued again after its job. changed resets the backoff.
func (l *loop) submit(path string, changed bool) {
	f := l.w.files[path]
	if f == nil {
		return
	}
	if changed {
		f.failures = 0
		delete(l.retries, path)
	}
	if f.running {
		if !f.rerun {
			l.w.log.Debug("file_changed_while_running", "path", path)
		}
		f.rerun = true
		f.gone = false
		return
	}
	delete(l.retries, path)
	if f.queued {
		return
	}
	f.queued = true
	f.state = StateQueued
	l.queue = append(l.queue, path)
}

// unqueue takes f out of the queue, because it changed and must settle.
func (l *loop) unqueue(f *file) {
	if !f.queued {
		return
	}
	f.queued = false
	if i := slices.Index(l.queue, f.path); i >= 0 {
		l.queue = slices.Delete(l.queue, i, i+1)
	}
}

// nextJob returns the job to hand to a worker and the channel to send it on,
// or a nil channel if there is nothing to do now.
//
// Images are unpinned only while no file is being processed, with the claims
// of every recorded file checked at that moment, so an unpin never races with
// an import that pins the same image. Unpinning waits for an idle moment.
func (l *loop) nextJob(now time.Time) (job, chan job) {
	if l.stopping || l.unpinning || l.inFlight >= l.w.cfg.Workers {
		return job{}, nil
	}
	if len(l.queue) > 0 {
		p := l.queue[0]
		j := job{path: p}
		if r := l.recs[p]; r != nil {
			c := *r
			c.Images = slices.Clone(r.Images)
			j.rec = &c
		}
		return j, l.jobs
	}
	if l.inFlight > 0 || len(l.unpin) == 0 || now.Before(l.unpinAt) {
		return job{}, nil
	}
	claimed := l.claimed()
	var names []string
	for name := range l.unpin {
		if _, ok := claimed[name]; ok {
			delete(l.unpin, name) // a present file produces it: keep the pin
			continue
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		l.markDirty()
		return job{}, nil
	}
	slices.Sort(names)
	return job{unpin: names}, l.jobs
}

// dispatched records that a worker took j.
func (l *loop) dispatched(j job) {
	l.inFlight++
	if j.unpin != nil {
		l.unpinning = true
		return
	}
	l.queue = l.queue[1:]
	l.w.obs.JobStarted()
	f := l.w.files[j.path]
	f.queued = false
	f.running = true
	f.state = StateRunning
}

// claimed returns the images that recorded files produce.
func (l *loop) claimed() map[string]struct{} {
	c := map[string]struct{}{}
	for _, r := range l.recs {
		for _, name := range r.Images {
			c[name] = struct{}{}
		}
	}
	return c
}

func (l *loop) addUnpin(names []string) {
	for _, name := range names {
		l.unpin[name] = struct{}{}
	}
	if len(names) > 0 {
		l.markDirty()
	}
}

// do runs one job; it is called by a worker.
func (w *Watcher) do(ctx context.Context, j job) (r result) {
	r.job = j
	if j.unpin != nil {
		r.err = w.img.Unpin(ctx, j.unpin)
		return r
	}
	r.stat, r.statErr = statFile(j.path)
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
	r.out, r.err = w.proc.Process(ctx, j.path)
	return r
}

// finished records what a worker made of a job.
func (l *loop) finished(r result) {
	l.inFlight--
	now := time.Now()
	if r.unpin != nil {
		l.unpinning = false
		if r.err != nil {
			l.unpinFails++
			delay := l.backoff(l.unpinFails)
			l.unpinAt = now.Add(delay)
			l.w.log.Error("unpin_failed", "images", r.unpin, "err", r.err, "retry_in", delay)
			return
		}
		l.unpinFails = 0
		l.unpinAt = time.Time{}
		for _, name := range r.unpin {
			delete(l.unpin, name)
		}
		l.markDirty()
		l.w.obs.Unpinned(len(r.unpin))
		l.w.log.Info("images_unpinned", "images", r.unpin)
		return
	}

	l.w.obs.JobFinished()
	l.changed = true
	f := l.w.files[r.path]
	f.running = false
	l.dealtWith(f)
	if errors.Is(r.statErr, fs.ErrNotExist) || errors.Is(r.statErr, errNotRegular) {
		if f.rerun && !f.gone {
			f.rerun = false
			l.submit(r.path, true)
			return
		}
		l.fileGone(r.path)
		return
	}

	old := l.recs[r.path]
	switch {
	case r.skipped:
		f.state = StateDone
		f.err = ""
		f.failures = 0
		l.w.obs.FileProcessed(f.kind, ResultSkipped, 0)
		l.w.log.Debug("file_unchanged", "path", r.path)
	case r.err == nil && r.statErr == nil:
		rec := l.record(r, ResultSuccess, dedupe(r.out.Images))
		var dropped []string
		if old != nil {
			for _, name := range old.Images {
				if !slices.Contains(rec.Images, name) {
					dropped = append(dropped, name)
				}
			}
		}
		l.addUnpin(dropped)
		f.state = StateDone
		f.err = ""
		f.failures = 0
		l.w.obs.FileProcessed(f.kind, ResultSuccess, r.dur)
		l.w.log.Info("file_processed", "path", r.path, "kind", f.kind, "images", rec.Images,
			"bytes", r.out.Bytes, "duration", r.dur, "attempt", f.attempts+1)
	default:
		err := r.err
		if err == nil {
			err = r.statErr
		}
		// The images of a failed job are added to the recorded ones: a list
		// reference that failed may still be wanted, so nothing is unpinned.
		images := r.out.Images
		if old != nil {
			images = append(slices.Clone(old.Images), images...)
		}
		l.record(r, ResultFailure, dedupe(images))
		f.state = StateFailed
		f.err = err.Error()
		f.failures++
		l.w.obs.FileProcessed(f.kind, ResultFailure, r.dur)
		if l.stopping {
			l.w.log.Warn("file_failed", "path", r.path, "kind", f.kind, "attempt", f.attempts+1, "err", err)
			break
		}
		delay := l.backoff(f.failures)
		l.retries[r.path] = now.Add(delay)
		l.w.obs.Retried()
		l.w.log.Error("file_failed", "path", r.path, "kind", f.kind, "images", r.out.Images, "bytes", r.out.Bytes,
			"duration", r.dur, "attempt", f.attempts+1, "err", err, "retry_in", delay)
	}
	if !r.skipped {
		f.attempts++
		f.duration = r.dur
	}
	if rec := l.recs[r.path]; rec != nil {
		f.images = rec.Images
		f.size = rec.Size
		f.updated = rec.Updated
		switch {
		case r.out.Detail != nil:
			f.detail = r.out.Detail
		case len(rec.Detail) > 0:
			f.detail = rec.Detail
		}
	}

	switch {
	case f.gone:
		f.gone = false
		l.fileGone(r.path)
	case f.rerun:
		f.rerun = false
		l.submit(r.path, true)
	}
}

// record remembers the result of a job and returns the record.
func (l *loop) record(r result, res string, images []string) *record {
	rec := &record{fileStat: r.stat, Result: res, Images: images, Updated: time.Now()}
	if r.out.Detail != nil {
		b, err := json.Marshal(r.out.Detail)
		if err != nil {
			l.w.log.Warn("detail_not_encodable", "path", r.path, "err", err)
		} else {
			rec.Detail = b
		}
	}
	l.recs[r.path] = rec
	l.markDirty()
	return rec
}

// fileGone forgets a file that is no longer there and queues its images for
// unpinning. A running file is forgotten when its job ends.
func (l *loop) fileGone(path string) {
	f := l.w.files[path]
	if f != nil && f.running {
		f.gone = true
		f.rerun = false
		return
	}
	delete(l.pend, path)
	delete(l.retries, path)
	if f != nil {
		l.changed = true
		l.unqueue(f)
		l.dealtWith(f)
		delete(l.w.files, path)
		l.w.log.Info("file_gone", "path", path)
	}
	if r := l.recs[path]; r != nil {
		delete(l.recs, path)
		l.addUnpin(r.Images)
		l.markDirty()
	}
}

// dealtWith marks a file of the startup walk as dealt with.
func (l *loop) dealtWith(f *file) {
	if !f.initial {
		return
	}
	f.initial = false
	l.outstanding--
	l.checkReady()
}

// checkReady sets Ready once every file of the startup walk is dealt with.
func (l *loop) checkReady() {
	if l.w.ready || l.starting || l.outstanding > 0 {
		return
	}
	l.w.ready = true
	l.w.obs.InitialSyncComplete()
	l.w.log.Info("initial_sync_complete", "files", len(l.w.files))
}

// backoff returns the delay before attempt n+1 after n failures: RetryMin
// doubled n-1 times, capped at RetryMax, less up to a quarter of jitter.
func (l *loop) backoff(n int) time.Duration {
	d := l.w.cfg.RetryMin
	for i := 1; i < n && d < l.w.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, l.w.cfg.RetryMax)
	if q := d / 4; q > 0 {
		d -= rand.N(q)
	}
	return d
}

// dedupe returns names sorted, without duplicates or empty names.
func dedupe(names []string) []string {
	out := slices.DeleteFunc(slices.Clone(names), func(s string) bool { return s == "" })
	slices.Sort(out)
	return slices.Compact(out)
}
