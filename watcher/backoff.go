package watcher

import (
	"math/rand/v2"
	"time"
)

// Backoff is the delay before the next attempt after repeated failures: Min
// after the first, doubling with each failure after that up to Max, with up
// to a quarter taken off at random so that failures that happened together
// are not retried together. It is used for file retries here, and cmd hands
// it to the importer for pull retries.
type Backoff struct {
	Min, Max time.Duration
}

// Delay returns the delay after n consecutive failures (n ≥ 1).
func (b Backoff) Delay(n int) time.Duration {
	d := b.base(n)
	if q := d / 4; q > 0 {
		d -= rand.N(q)
	}
	return d
}

// base is Delay without the jitter.
func (b Backoff) base(n int) time.Duration {
	d := b.Min
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}
