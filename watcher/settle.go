package watcher

import (
	"errors"
	"io/fs"
	"slices"
	"time"
)

// How the watcher tells that a file is complete; see the package comment.

// probeWindow is how long a file that appeared by Create is watched for
// Write events before it is taken as complete.
const probeWindow = 40 * time.Millisecond

// pending is a file that is not yet known to be complete.
type pending struct {
	probe    bool      // appeared by Create, no Write seen yet
	last     fileStat  // as of the last event or check
	deadline time.Time // when to check again
}

// found deals with a file seen by a walk: ready at once, or left to settle if
// it may still be written.
func (l *loop) found(fd found, dir string, now time.Time) {
	f := l.w.files[fd.path]
	if f != nil && f.seen.same(fd.stat) {
		return // nothing new since it was last found complete
	}
	if s := l.q.state(fd.path); f != nil && f.last != "" && (s == entryIdle || s == entryRetry) {
		if r := l.recs[fd.path]; r != nil && r.same(fd.stat) {
			return // nothing new since it was processed
		}
	}
	if f == nil {
		f = l.touch(fd.path, dir)
	}
	f.size = fd.stat.Size
	if _, ok := l.pend[fd.path]; ok {
		return
	}
	if now.Sub(fd.stat.Mtime) < l.w.cfg.Settle {
		l.pend[fd.path] = &pending{last: fd.stat, deadline: now.Add(l.w.cfg.Settle)}
		return
	}
	l.ready(fd.path, fd.stat)
}

// written handles a Write or Chmod: the file settles again.
func (l *loop) written(name, dir string) {
	l.pendFile(name, dir, false, l.w.cfg.Settle)
}

// pendFile holds a supported file out of the queue until it has been
// unchanged for wait (a probe also requires that no Write arrived).
func (l *loop) pendFile(name, dir string, probe bool, wait time.Duration) {
	if l.w.match(name) == "" {
		return
	}
	st, err := statFile(dir, name)
	if err != nil {
		return
	}
	f := l.touch(name, dir)
	f.size = st.Size
	l.q.hold(name)
	l.pend[name] = &pending{probe: probe, last: st, deadline: time.Now().Add(wait)}
}

// companionChanged runs again the file that name, if it is a companion
// (Config.Companion), belongs to, and reports whether it is one. A file
// still settling is left to settle.
func (l *loop) companionChanged(name string) bool {
	if l.w.cfg.Companion == nil {
		return false
	}
	path, ok := l.w.cfg.Companion(name)
	if !ok {
		return false
	}
	f := l.w.files[path]
	if _, settling := l.pend[path]; f == nil || settling {
		return true
	}
	l.w.log.Debug("companion_changed", "path", path, "companion", name)
	l.ready(path, f.seen)
	return true
}

// settle checks the pending files whose deadline passed.
func (l *loop) settle(now time.Time) {
	var due []string
	for p, pe := range l.pend {
		if !now.Before(pe.deadline) {
			due = append(due, p)
		}
	}
	slices.Sort(due)
	for _, p := range due {
		if _, ok := l.pend[p]; ok {
			l.settled(p, now)
		}
	}
}

// settled checks a pending file whose deadline passed: it is ready if
// complete, settles again if it changed, and is forgotten if gone.
func (l *loop) settled(path string, now time.Time) {
	pe := l.pend[path]
	st, err := statFile(l.dirOf(path), path)
	if err != nil {
		delete(l.pend, path)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotRegular) {
			l.fileGone(path)
			return
		}
		l.w.log.Warn("stat_failed", "path", path, "err", err)
		return
	}
	if (pe.probe && st.Size == 0) || !st.same(pe.last) {
		*pe = pending{last: st, deadline: now.Add(l.w.cfg.Settle)}
		return
	}
	delete(l.pend, path)
	if f := l.w.files[path]; f != nil {
		f.size = st.Size
	}
	l.ready(path, st)
}

// settleWake returns the earliest settle deadline, or zero.
func (l *loop) settleWake() time.Time {
	var wake time.Time
	for _, pe := range l.pend {
		if wake.IsZero() || pe.deadline.Before(wake) {
			wake = pe.deadline
		}
	}
	return wake
}
