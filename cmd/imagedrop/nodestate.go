package main

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/imagedrop/imagedrop/watcher"
)

// preload is what the watcher's Status says of the node's images, for its
// Node object.
type preload struct {
	ready                 bool // every file found at start was dealt with
	done, total, failing  int
	waiting               int // files waiting for a shared-import slot
	doneBytes, totalBytes int64
}

func summarize(s watcher.Status) preload {
	p := preload{ready: s.Ready, total: len(s.Files)}
	for _, f := range s.Files {
		p.totalBytes += f.Size
		switch f.State {
		case watcher.StateDone:
			p.done++
			p.doneBytes += f.Size
		case watcher.StateFailed:
			p.failing++
		}
		if f.Waiting == waitingForSlot {
			p.waiting++
		}
	}
	return p
}

// phase is where the node's preload stands: one of the constants below.
type phase int

const (
	phasePreloading phase = iota // the files found at start are not all dealt with
	phaseComplete                // they are, and no file fails
	phaseFailing                 // they are, and some file fails
)

func (p preload) phase() phase {
	switch {
	case !p.ready:
		return phasePreloading
	case p.failing > 0:
		return phaseFailing
	}
	return phaseComplete
}

// Reasons of the node condition.
const (
	reasonPreloading = "Preloading"
	reasonComplete   = "PreloadComplete"
	reasonFailing    = "FilesFailing"
)

// nodeCondition is the node condition imagedrop maintains, without its
// times.
type nodeCondition struct {
	status          corev1.ConditionStatus
	reason, message string
}

func (p preload) condition() nodeCondition {
	switch p.phase() {
	case phasePreloading:
		msg := fmt.Sprintf("%d of %d files done (%s of %s)", p.done, p.total, formatSize(uint64(p.doneBytes)), formatSize(uint64(p.totalBytes)))
		if p.failing > 0 {
			msg += fmt.Sprintf(", %d failing", p.failing)
		}
		if p.waiting > 0 {
			msg += fmt.Sprintf("; %d waiting for %s", p.waiting, waitingForSlot)
		}
		return nodeCondition{corev1.ConditionFalse, reasonPreloading, msg}
	case phaseFailing:
		return nodeCondition{corev1.ConditionFalse, reasonFailing,
			fmt.Sprintf("%d of %d files failing (see imagedrop's /status and the node's Events)", p.failing, p.total)}
	}
	return nodeCondition{corev1.ConditionTrue, reasonComplete, fmt.Sprintf("%d files done (%s)", p.done, formatSize(uint64(p.doneBytes)))}
}

// taintDue says whether the startup taint goes now, sinceStart after
// imagedrop started, and why.
func (c *nodeConfig) taintDue(p preload, sinceStart time.Duration) (bool, string) {
	switch {
	case p.phase() == phaseComplete:
		return true, "startup preload complete"
	case c.taintPolicy == taintRemoveAfter && sinceStart >= c.taintTimeout:
		return true, fmt.Sprintf("--taint-timeout %s reached with the preload %s", c.taintTimeout, p.condition().message)
	}
	return false, ""
}

// fileFailure is one failed attempt at a file, for an Event.
type fileFailure struct{ path, err string }

// attempt is how far a file got, as last seen: a failure is new when
// either changed.
type attempt struct {
	n     int
	state string
}

// newFailures returns the files of s that failed since seen was recorded,
// and records s in seen.
func newFailures(seen map[string]attempt, s watcher.Status) []fileFailure {
	var out []fileFailure
	present := make(map[string]bool, len(s.Files))
	for _, f := range s.Files {
		present[f.Path] = true
		now := attempt{f.Attempts, f.State}
		if f.State == watcher.StateFailed && seen[f.Path] != now {
			out = append(out, fileFailure{f.Path, f.Error})
		}
		seen[f.Path] = now
	}
	for p := range seen {
		if !present[p] {
			delete(seen, p)
		}
	}
	return out
}
