package watcher

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// abandonAfter is how long jobs may take to return once cancelled at the end
// of the grace, before shutdown goes on without them.
const abandonAfter = 5 * time.Second

// shutdown stops taking new jobs and lets running ones finish within
// Config.Grace; then it cancels them, and abandons those that do not return
// within abandonAfter (a job stuck where cancellation cannot reach). It
// saves the state whatever happened, and returns an error if jobs were
// abandoned or the state could not be saved.
func (l *loop) shutdown(cancelJobs context.CancelFunc, workersDone <-chan struct{}) error {
	w := l.w
	w.mu.Lock()
	l.q.stop()
	inFlight := l.q.inFlight
	w.mu.Unlock()
	close(l.jobs)
	if inFlight > 0 {
		w.log.Info("waiting_for_running_jobs", "in_flight", inFlight, "grace", w.cfg.Grace)
	}
	grace := time.NewTimer(w.cfg.Grace)
	defer grace.Stop()
	beat := time.NewTicker(heartbeatEvery)
	defer beat.Stop()
	var abandon <-chan time.Time
	var err error
	for done := false; !done; {
		w.beat.Store(time.Now().UnixNano())
		select {
		case <-beat.C:
		case r := <-l.results:
			w.mu.Lock()
			l.finished(r)
			w.mu.Unlock()
		case <-grace.C:
			w.log.Warn("grace_expired_cancelling_jobs", "grace", w.cfg.Grace)
			cancelJobs()
			abandon = time.After(abandonAfter)
		case <-abandon:
			w.mu.Lock()
			n := l.q.inFlight
			w.mu.Unlock()
			w.log.Error("jobs_abandoned", "jobs", n, "waited", w.cfg.Grace+abandonAfter)
			err = fmt.Errorf("%d job(s) did not stop within the grace and %s after cancellation", n, abandonAfter)
			close(l.abandoned)
			done = true
		case <-workersDone:
			done = true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	l.report()
	if saveErr := l.save(); saveErr != nil {
		err = errors.Join(err, saveErr)
	}
	return err
}
