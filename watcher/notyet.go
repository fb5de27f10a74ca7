package watcher

import (
	"errors"
	"fmt"
	"time"
)

// NotYet is returned by a Processor, as the error or in its chain, when a
// file cannot be processed yet for a reason outside the file and the node,
// such as a cluster-wide import slot that another node holds. The job gives
// its worker back at once, so that other files go on meanwhile; the file is
// tried again after RetryIn, and the try is neither an attempt nor a
// failure. Status shows the file queued, with Waiting.
type NotYet struct {
	// Waiting says what the file waits for, shown as FileStatus.Waiting
	// (a short phrase: "a shared-import slot").
	Waiting string
	// RetryIn is how long until the next try.
	RetryIn time.Duration
}

func (e *NotYet) Error() string {
	return fmt.Sprintf("waiting for %s, next try in %s", e.Waiting, e.RetryIn)
}

// notYet returns the NotYet in err's chain, or nil.
func notYet(err error) *NotYet {
	var ny *NotYet
	if errors.As(err, &ny) {
		return ny
	}
	return nil
}
