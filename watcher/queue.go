package watcher

import (
	"maps"
	"slices"
	"time"
)

// entryState is where one path stands in the queue. Every transition is made
// by one of the queue's methods below; nothing else writes it.
type entryState int

const (
	// entryIdle: nothing to do until the file is ready again. It was
	// processed, failed with no retry (at shutdown), or is settling.
	entryIdle entryState = iota
	// entryQueued: waiting for a worker.
	entryQueued
	// entryRunning: a worker has it.
	entryRunning
	// entryRerun: a worker has it and the file changed meanwhile; it is
	// queued again when the job ends.
	entryRerun
	// entryGone: a worker has it and the file went away meanwhile; it is
	// forgotten when the job ends.
	entryGone
	// entryRetry: the last job failed; it is queued again when its time in
	// queue.retries comes.
	entryRetry
	// entryWaiting: the last job found the file cannot be processed yet
	// (the Processor returned NotYet); it holds no worker, and is queued
	// again when its time in queue.retries comes, its failures unchanged.
	entryWaiting
)

var entryStateNames = [...]string{"idle", "queued", "running", "rerun", "gone", "retry", "waiting"}

func (s entryState) String() string { return entryStateNames[s] }

// busy reports whether a worker has the path.
func (s entryState) busy() bool {
	return s == entryRunning || s == entryRerun || s == entryGone
}

// entry is the queue's knowledge of one path.
type entry struct {
	state    entryState
	failures int // consecutive failed jobs, for the backoff
}

// jobResult is how a file's job ended, as far as the queue cares.
type jobResult int

const (
	jobSucceeded jobResult = iota // processed, or skipped as unchanged
	jobFailed                     // the Processor failed; it may work later
	jobInvalid                    // the Processor failed for good: the file is bad
	jobVanished                   // the file was not there when the job began
)

// queue schedules the work of the watcher: one entry per path, so a path is
// never processed twice at once; paths in the order they became ready;
// failed paths retried with backoff; and images unpinned only when nothing
// else runs. It does no I/O and reads no clock: callers pass now in. Only the
// loop's goroutine uses it.
type queue struct {
	workers int
	backoff func(failures int) time.Duration

	entries  map[string]*entry    // paths that are not idle, or have failures
	order    []string             // the entryQueued paths, first to run first
	retries  map[string]time.Time // the entryRetry and entryWaiting paths, and when they are due
	inFlight int                  // jobs handed out and not done, the unpin job included
	stopping bool

	unpin      map[string]struct{} // images waiting to be unpinned
	unpinning  bool                // the unpin job is running
	unpinFails int
	unpinAt    time.Time // no unpin before this, after a failure
}

func newQueue(workers int, backoff func(failures int) time.Duration) *queue {
	return &queue{
		workers: workers,
		backoff: backoff,
		entries: map[string]*entry{},
		retries: map[string]time.Time{},
		unpin:   map[string]struct{}{},
	}
}

// state returns the state of path; an unknown path is idle.
func (q *queue) state(path string) entryState {
	if e := q.entries[path]; e != nil {
		return e.state
	}
	return entryIdle
}

// failures returns how many jobs of path failed in a row.
func (q *queue) failures(path string) int {
	if e := q.entries[path]; e != nil {
		return e.failures
	}
	return 0
}

// depth returns how many paths wait for a worker.
func (q *queue) depth() int { return len(q.order) }

// ready is told that path is complete and new or changed. It is queued, with
// its failures forgotten (a change may have mended it); a path a worker has
// is queued again after its job.
func (q *queue) ready(path string) {
	e := q.entries[path]
	if e == nil {
		e = &entry{}
		q.entries[path] = e
	}
	e.failures = 0
	switch e.state {
	case entryRunning, entryGone:
		e.state = entryRerun
	case entryIdle, entryRetry, entryWaiting:
		q.enqueue(path, e)
	}
}

// retry queues failed and waiting paths whose time has come, keeping their
// failures, and returns the failed ones in order.
func (q *queue) retry(now time.Time) (failed []string) {
	var due []string
	for p, at := range q.retries {
		if !now.Before(at) {
			due = append(due, p)
		}
	}
	slices.Sort(due)
	for _, p := range due {
		e := q.entries[p]
		if e.state == entryRetry {
			failed = append(failed, p)
		}
		q.enqueue(p, e)
	}
	return failed
}

// hold is told that path is changing: it leaves the queue until it is ready
// again. A job that runs is not disturbed.
func (q *queue) hold(path string) {
	e := q.entries[path]
	if e == nil {
		return
	}
	switch e.state {
	case entryQueued:
		q.dequeue(path)
		q.idle(path, e)
	case entryRetry, entryWaiting:
		delete(q.retries, path)
		q.idle(path, e)
	}
}

// gone is told that path went away. It returns true if the path is forgotten
// now; if a worker has it, it returns false, and done reports it forgotten
// when the job ends.
func (q *queue) gone(path string) bool {
	e := q.entries[path]
	if e == nil {
		return true
	}
	switch e.state {
	case entryRunning, entryRerun:
		e.state = entryGone
		return false
	case entryGone:
		return false
	case entryQueued:
		q.dequeue(path)
	case entryRetry, entryWaiting:
		delete(q.retries, path)
	}
	delete(q.entries, path)
	return true
}

// next returns the job to start at now, if there is one. Files come first,
// in order, up to the number of workers. Images are unpinned only when no
// file is queued or running, so an unpin never races an import that pins the
// same image; the caller drops the names a present file still claims (keep).
func (q *queue) next(now time.Time) (job, bool) {
	if q.stopping || q.unpinning || q.inFlight >= q.workers {
		return job{}, false
	}
	if len(q.order) > 0 {
		return job{path: q.order[0]}, true
	}
	if q.inFlight > 0 || len(q.unpin) == 0 || now.Before(q.unpinAt) {
		return job{}, false
	}
	return job{unpin: slices.Sorted(maps.Keys(q.unpin))}, true
}

// started is told that a worker took j, as returned by next.
func (q *queue) started(j job) {
	q.inFlight++
	if j.unpin != nil {
		q.unpinning = true
		return
	}
	q.dequeue(j.path)
	q.entries[j.path].state = entryRunning
}

// done is told how the job of path ended. It returns the delay before the
// path is retried (zero if it is not), and whether the path is to be
// forgotten because it went away.
func (q *queue) done(path string, res jobResult, now time.Time) (retryIn time.Duration, forget bool) {
	q.inFlight--
	e := q.entries[path]
	after := e.state
	switch res {
	case jobVanished:
		if after != entryRerun {
			delete(q.entries, path)
			return 0, true
		}
	case jobSucceeded:
		e.failures = 0
	case jobFailed, jobInvalid:
		e.failures++
	}
	switch after {
	case entryGone:
		delete(q.entries, path)
		return 0, true
	case entryRerun:
		e.failures = 0
		q.enqueue(path, e)
		return 0, false
	}
	if res != jobFailed || q.stopping { // an invalid file waits until it changes
		q.idle(path, e)
		return 0, false
	}
	retryIn = q.backoff(e.failures)
	e.state = entryRetry
	q.retries[path] = now.Add(retryIn)
	return retryIn, false
}

// notYet is told that the job of path found it cannot be processed yet: it
// gives back its worker and is queued again at, neither failed nor done. A
// path that changed meanwhile is queued again at once, and one that went
// away is forgotten (forget), as done does.
func (q *queue) notYet(path string, at time.Time) (forget bool) {
	q.inFlight--
	e := q.entries[path]
	switch {
	case e.state == entryGone:
		delete(q.entries, path)
		return true
	case e.state == entryRerun:
		q.enqueue(path, e)
	case q.stopping:
		q.idle(path, e)
	default:
		e.state = entryWaiting
		q.retries[path] = at
	}
	return false
}

// addUnpin adds images to unpin once nothing claims them.
func (q *queue) addUnpin(names []string) {
	for _, name := range names {
		q.unpin[name] = struct{}{}
	}
}

// keep takes images out of those to unpin, because a present file claims
// them.
func (q *queue) keep(names []string) {
	for _, name := range names {
		delete(q.unpin, name)
	}
}

// unpins returns the images waiting to be unpinned, sorted.
func (q *queue) unpins() []string { return slices.Sorted(maps.Keys(q.unpin)) }

// unpinDone is told how the unpin job ended. After a failure the images are
// kept and retried after the returned delay.
func (q *queue) unpinDone(names []string, failed bool, now time.Time) (retryIn time.Duration) {
	q.inFlight--
	q.unpinning = false
	if failed {
		q.unpinFails++
		retryIn = q.backoff(q.unpinFails)
		q.unpinAt = now.Add(retryIn)
		return retryIn
	}
	q.unpinFails = 0
	q.unpinAt = time.Time{}
	q.keep(names)
	return 0
}

// stop ends scheduling: next returns nothing and failures are not retried.
func (q *queue) stop() { q.stopping = true }

// wake returns the earliest time the queue has something to do by the
// clock (a retry, a waiting path's next try, or an unpin after a failure),
// or zero.
func (q *queue) wake() time.Time {
	var wake time.Time
	for _, at := range q.retries {
		if wake.IsZero() || at.Before(wake) {
			wake = at
		}
	}
	if len(q.unpin) > 0 && !q.unpinAt.IsZero() && (wake.IsZero() || q.unpinAt.Before(wake)) {
		wake = q.unpinAt
	}
	return wake
}

func (q *queue) enqueue(path string, e *entry) {
	switch e.state {
	case entryQueued:
		return
	case entryRetry, entryWaiting:
		delete(q.retries, path)
	}
	e.state = entryQueued
	q.order = append(q.order, path)
}

// dequeue takes path out of the order; the first path, the usual case, in
// constant time.
func (q *queue) dequeue(path string) {
	if len(q.order) > 0 && q.order[0] == path {
		q.order = q.order[1:]
		return
	}
	if i := slices.Index(q.order, path); i >= 0 {
		q.order = slices.Delete(q.order, i, i+1)
	}
}

// idle makes path idle; an entry with nothing to remember is dropped, so the
// queue holds only paths with something to do or a failure to back off from.
func (q *queue) idle(path string, e *entry) {
	e.state = entryIdle
	if e.failures == 0 {
		delete(q.entries, path)
	}
}
