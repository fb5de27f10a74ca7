package importer

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestPulse checks that a list's pulse reports each event, beats in between,
// and beats only while its last event is younger than the limit.
func TestPulse(t *testing.T) {
	t.Parallel()
	var beats atomic.Int64
	p, stop := newPulse(func() { beats.Add(1) }, time.Millisecond, time.Hour)
	defer stop()
	if beats.Load() != 1 {
		t.Fatalf("beats after start = %d, want 1 (the start is an event)", beats.Load())
	}
	deadline := time.Now().Add(10 * time.Second)
	for beats.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no beats while the last event is young")
		}
		time.Sleep(time.Millisecond)
	}
	now := time.Now()
	p.last.Store(now.UnixNano())
	for _, tt := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {59 * time.Minute, true}, {time.Hour, false}, {3 * time.Hour, false}} {
		if got := p.alive(now.Add(tt.at)); got != tt.want {
			t.Errorf("alive %s after the last event = %v, want %v", tt.at, got, tt.want)
		}
	}
	n := beats.Load()
	p.mark()
	if got := beats.Load(); got < n+1 {
		t.Errorf("mark: beats = %d, want at least %d", got, n+1)
	}
	_, stopNil := newPulse(nil, time.Millisecond, time.Second) // no Progress: no goroutine
	stopNil()
}
