package watcher

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"slices"
	"time"
)

// finished takes what a worker made of a job: the queue is told how it
// ended, and the record and the file's status are brought up to date.
func (l *loop) finished(r result) {
	now := time.Now()
	if r.unpin != nil {
		l.unpinFinished(r, now)
		return
	}
	l.w.obs.JobFinished()
	l.changed = true
	f := l.w.files[r.path]
	r.abort(nil)
	delete(l.aborts, r.path)
	delete(l.w.progress, r.path)

	res := jobSucceeded
	cause := context.Cause(r.ctx)
	ny := notYet(r.err)
	switch {
	case errors.Is(r.statErr, fs.ErrNotExist) || errors.Is(r.statErr, errNotRegular),
		r.err != nil && (errors.Is(cause, errFileGone) || errors.Is(cause, errFileChanged)):
		res = jobVanished // what it read is no more: forgotten, or run again
	case ny != nil:
		l.notYet(f, r.path, ny, now)
		return
	case permanent(r.err):
		res = jobInvalid
	case r.err != nil || r.statErr != nil:
		res = jobFailed
	}
	l.dealtWith(f)
	if f != nil {
		f.waiting = ""
	}
	retryIn, forget := l.q.done(r.path, res, now)
	switch res {
	case jobSucceeded:
		l.succeeded(f, r)
	case jobFailed, jobInvalid:
		l.failed(f, r, res == jobInvalid, retryIn)
	}
	if res != jobVanished {
		l.showRecord(f, r)
	}
	if forget {
		l.drop(r.path)
	}
}

// notYet takes a job that found its file cannot be processed yet: the file
// waits, without a worker, to be tried again. It is not dealt with: a file
// of the startup walk that waits keeps the watcher from being Ready.
func (l *loop) notYet(f *file, path string, ny *NotYet, now time.Time) {
	if f != nil && f.waiting != ny.Waiting {
		f.waiting = ny.Waiting
		l.w.log.Info("file_waiting", "path", path, "for", ny.Waiting, "retry_in", ny.RetryIn)
	}
	if l.q.notYet(path, now.Add(ny.RetryIn)) {
		l.drop(path)
	}
}

// succeeded records a file that was processed, or skipped as unchanged, and
// queues for unpinning the images it no longer produces.
func (l *loop) succeeded(f *file, r result) {
	f.last, f.err, f.invalid = StateDone, "", false
	if r.skipped {
		l.w.obs.FileProcessed(f.kind, ResultSkipped, 0)
		l.w.log.Debug("file_unchanged", "path", r.path)
		return
	}
	old := l.recs[r.path]
	rec := l.record(r, ResultSuccess, dedupe(r.out.Images))
	if old != nil {
		var dropped []string
		for _, name := range old.Images {
			if !slices.Contains(rec.Images, name) {
				dropped = append(dropped, name)
			}
		}
		l.addUnpin(dropped)
	}
	l.w.obs.FileProcessed(f.kind, ResultSuccess, r.dur)
	l.w.log.Info("file_processed", "path", r.path, "kind", f.kind, "images", rec.Images,
		"bytes", r.out.Bytes, "duration", r.dur, "attempt", f.attempts+1)
}

// failed records a file whose job failed. The images of a failed job are
// added to the recorded ones: a list reference that failed may still be
// wanted, so nothing is unpinned.
func (l *loop) failed(f *file, r result, invalid bool, retryIn time.Duration) {
	err := r.err
	if err == nil {
		err = r.statErr
	}
	images := r.out.Images
	if old := l.recs[r.path]; old != nil {
		images = append(slices.Clone(old.Images), images...)
	}
	l.record(r, ResultFailure, dedupe(images))
	f.last, f.err, f.invalid = StateFailed, err.Error(), invalid
	l.w.obs.FileProcessed(f.kind, ResultFailure, r.dur)
	if invalid {
		l.w.log.Error("file_invalid", "path", r.path, "kind", f.kind, "duration", r.dur, "attempt", f.attempts+1,
			"err", err, "retry", "when the file changes")
		return
	}
	if retryIn == 0 {
		l.w.log.Warn("file_failed", "path", r.path, "kind", f.kind, "attempt", f.attempts+1, "err", err)
		return
	}
	l.w.obs.Retried()
	l.w.log.Error("file_failed", "path", r.path, "kind", f.kind, "images", r.out.Images, "bytes", r.out.Bytes,
		"duration", r.dur, "attempt", f.attempts+1, "err", err, "retry_in", retryIn)
}

// showRecord copies what was recorded for a processed file into its status.
func (l *loop) showRecord(f *file, r result) {
	if !r.skipped {
		f.attempts++
		f.duration = r.dur
	}
	rec := l.recs[r.path]
	if rec == nil {
		return
	}
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

// unpinFinished takes the end of an unpin job.
func (l *loop) unpinFinished(r result, now time.Time) {
	if retryIn := l.q.unpinDone(r.unpin, r.err != nil, now); retryIn > 0 {
		l.w.log.Error("unpin_failed", "images", r.unpin, "err", r.err, "retry_in", retryIn)
		return
	}
	l.markDirty()
	l.w.obs.Unpinned(len(r.unpin))
	l.w.log.Info("images_unpinned", "images", r.unpin)
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

// fileGone is told that the file at path went away: it is forgotten, now or,
// if a worker has it, when its job ends.
func (l *loop) fileGone(path string) {
	if l.q.gone(path) {
		l.drop(path)
		return
	}
	l.abort(path, errFileGone)
}

// drop forgets a file that is no longer there and queues its images for
// unpinning.
func (l *loop) drop(path string) {
	delete(l.pend, path)
	if f := l.w.files[path]; f != nil {
		l.changed = true
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
	l.q.addUnpin(names)
	if len(names) > 0 {
		l.markDirty()
	}
}

// dealtWith marks a file of the startup walk as dealt with.
func (l *loop) dealtWith(f *file) {
	if f == nil || !f.initial {
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

// permanent reports whether err says the file itself is bad, so that trying
// again cannot help until it changes: an error in its chain has a method
// Permanent() bool that returns true (as the importer's do).
func permanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// dedupe returns names sorted, without duplicates or empty names.
func dedupe(names []string) []string {
	out := slices.DeleteFunc(slices.Clone(names), func(s string) bool { return s == "" })
	slices.Sort(out)
	return slices.Compact(out)
}
