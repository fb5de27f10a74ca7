package watcher

import "time"

// Results of a file, as passed to Observer.FileProcessed.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
	ResultSkipped = "skipped" // unchanged since a recorded success, images still present
)

// Results returns every result Observer.FileProcessed is told.
func Results() []string { return []string{ResultSuccess, ResultFailure, ResultSkipped} }

// Observer is told what the watcher does, for metrics; *metrics.Metrics
// implements it. Its methods are called from the watcher's loop and must not
// block or call back into the Watcher.
type Observer interface {
	// FileProcessed reports a finished file: kind is KindArchive or KindList,
	// result one of ResultSuccess, ResultFailure or ResultSkipped.
	FileProcessed(kind, result string, d time.Duration)
	// SetQueueDepth reports how many files wait for a worker.
	SetQueueDepth(n int)
	// JobStarted and JobFinished bracket the processing of one file.
	JobStarted()
	JobFinished()
	// Retried reports that a failed file was scheduled for another attempt.
	Retried()
	// SetFilesFailing reports how many files are in the failed state, and
	// how many of those failed for good (invalid: retried when they change).
	SetFilesFailing(n, invalid int)
	// InitialSyncComplete reports that every file found at start has been
	// dealt with.
	InitialSyncComplete()
	// SetPinnedImages reports how many distinct images the known files
	// produced.
	SetPinnedImages(n int)
	// Unpinned reports that n images were unpinned.
	Unpinned(n int)
	// SetDegradedDirs reports how many watched directories are rescanned
	// because an inotify watch could not be added.
	SetDegradedDirs(n int)
	// Rescanned reports one rescan of a directory.
	Rescanned()
	// StateSaveFailed reports that the state file could not be written.
	StateSaveFailed()
}

// Nop is an Observer that ignores everything.
type Nop struct{}

var _ Observer = Nop{}

// FileProcessed implements Observer.
func (Nop) FileProcessed(string, string, time.Duration) {}

// SetQueueDepth implements Observer.
func (Nop) SetQueueDepth(int) {}

// JobStarted implements Observer.
func (Nop) JobStarted() {}

// JobFinished implements Observer.
func (Nop) JobFinished() {}

// Retried implements Observer.
func (Nop) Retried() {}

// SetFilesFailing implements Observer.
func (Nop) SetFilesFailing(int, int) {}

// InitialSyncComplete implements Observer.
func (Nop) InitialSyncComplete() {}

// SetPinnedImages implements Observer.
func (Nop) SetPinnedImages(int) {}

// Unpinned implements Observer.
func (Nop) Unpinned(int) {}

// SetDegradedDirs implements Observer.
func (Nop) SetDegradedDirs(int) {}

// Rescanned implements Observer.
func (Nop) Rescanned() {}

// StateSaveFailed implements Observer.
func (Nop) StateSaveFailed() {}
