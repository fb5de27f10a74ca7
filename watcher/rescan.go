package watcher

import (
	"fmt"
	"time"
)

// Rescans. inotify cannot serve every directory: a watch cannot be added
// once the per-user limit fs.inotify.max_user_watches is reached (ENOSPC),
// and on network filesystems it does not see what other machines write. Such
// directories are walked again every Config.Rescan, which finds new, changed
// and removed files by stat alone, with the same settle rules as events
// (settle.go). A directory whose watch failed keeps trying to add it at every
// rescan, and goes back to inotify once every watch of its tree is added.

// addWatch watches p, a directory in the watched directory root. It returns
// false if p is not watched: root is rescanned by configuration, or inotify
// refused the watch, and root is rescanned from now on.
func (l *loop) addWatch(p, root string) bool {
	if l.w.rescanned[root] {
		return false
	}
	if err := l.fsw.Add(p); err != nil {
		l.scanFailed = true
		l.degrade(root, p, err)
		return false
	}
	return true
}

// degrade puts root in the rescanning mode because watching p failed.
func (l *loop) degrade(root, p string, err error) {
	if _, ok := l.w.blind[root]; ok {
		return
	}
	l.w.blind[root] = fmt.Sprintf("watch %s: %v", p, err)
	l.w.log.Error("watch_failed_rescanning", "dir", root, "path", p, "err", err, "rescan_every", l.w.cfg.Rescan)
	l.w.obs.SetDegradedDirs(len(l.w.blind))
	l.scheduleRescan(time.Now())
}

// scan walks root, adding the watches it needs. A root that was rescanned
// because a watch failed is watched again if every watch could be added.
func (l *loop) scan(root string) {
	l.scanFailed = false
	l.ensureDir(root)
	if _, ok := l.w.blind[root]; ok && !l.scanFailed {
		delete(l.w.blind, root)
		l.w.log.Info("watch_restored", "dir", root)
		l.w.obs.SetDegradedDirs(len(l.w.blind))
	}
}

// rescanDue walks the rescanned directories again if their time has come.
func (l *loop) rescanDue(now time.Time) {
	if l.rescanAt.IsZero() || now.Before(l.rescanAt) {
		return
	}
	l.rescanAt = time.Time{}
	for _, d := range l.w.dirs {
		if _, blind := l.w.blind[d]; blind || l.w.rescanned[d] {
			l.w.obs.Rescanned()
			l.scan(d)
		}
	}
	l.scheduleRescan(now)
}

// scheduleRescan sets the time of the next rescan, if a directory needs one
// and none is set.
func (l *loop) scheduleRescan(now time.Time) {
	if l.rescanAt.IsZero() && (len(l.w.blind) > 0 || len(l.w.rescanned) > 0) {
		l.rescanAt = now.Add(l.w.cfg.Rescan)
	}
}
