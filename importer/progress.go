package importer

import (
	"sync/atomic"
	"time"
)

// Input is a file for Process.
type Input struct {
	// Path is the file. Root, if not empty, is the images directory it was
	// found in, whose content is untrusted (see openInput).
	Root, Path string
	// Progress, if not nil, is called whenever the work makes progress: as
	// an archive's bytes are read, as a list's references are done, and
	// while a list's pulls run within --pull-timeout. A caller that sees no
	// call for long knows the work is stuck.
	Progress func()
	// Read, if not nil, is called with the bytes of an archive read so far,
	// as they are read (a terminal's progress line).
	Read func(total int64)
}

// pulse tells a list's Input.Progress that its pulls go on. Each pull
// started or ended marks it; between marks it beats every interval, but only
// while the last mark is younger than limit (the pull timeout): a healthy
// pull ends within it, so a beat that stops means pulls stuck past their
// own timeout, and the caller sees no progress.
type pulse struct {
	fn    func()
	limit time.Duration
	last  atomic.Int64 // unix nanoseconds of the last mark
}

// newPulse returns a pulse of fn, beating until the returned func is called.
// fn may be nil.
func newPulse(fn func(), interval, limit time.Duration) (*pulse, func()) {
	p := &pulse{fn: fn, limit: limit}
	p.mark()
	if fn == nil {
		return p, func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if p.alive(time.Now()) {
					fn()
				}
			}
		}
	}()
	return p, func() { close(stop); <-done }
}

// alive reports whether the pulse beats at now: its last mark is younger
// than its limit.
func (p *pulse) alive(now time.Time) bool {
	return now.Sub(time.Unix(0, p.last.Load())) < p.limit
}

// mark records an event (a pull started or ended) and reports it.
func (p *pulse) mark() {
	p.last.Store(time.Now().UnixNano())
	if p.fn != nil {
		p.fn()
	}
}

// pulseEvery is how often a list's pulse beats.
const pulseEvery = 10 * time.Second
