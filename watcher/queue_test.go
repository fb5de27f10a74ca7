package watcher

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// An op is one thing told to the queue in a table test: "ready a", "hold a",
// "gone a", "start" (the next job is taken by a worker), "ok a", "fail a",
// "invalid a" (failed for good), "vanish a" (the job of a ended so),
// "notyet a 3s" (the job of a found it cannot run yet: again in 3s),
// "retry" (due retries are queued),
// "wait 3s" (the clock moves on), "unpin x y" (images to unpin), "unpin-ok",
// "unpin-fail", "stop".
type op string

// queueStep is one op and what must hold after it. Empty fields are not
// checked; "-" checks for nothing (no job, no order).
type queueStep struct {
	op     op
	states string        // "a=running b=queued": the state of each named path
	order  string        // the queued paths, in order
	next   string        // the job next returns: a path, "unpin x y", or "-"
	forget bool          // for ok/fail/vanish/gone/notyet: the path must be forgotten
	retry  time.Duration // for fail and unpin-fail: the delay before the retry, 0 for none
}

// linearBackoff makes retry delays easy to predict: n seconds after n
// failures.
func linearBackoff(n int) time.Duration { return time.Duration(n) * time.Second }

func TestQueueTransitions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		workers int // 1 if zero
		steps   []queueStep
	}{
		{
			name: "new file is queued, runs, and is done",
			steps: []queueStep{
				{op: "ready a", states: "a=queued", order: "a", next: "a"},
				{op: "start", states: "a=running", order: "-", next: "-"},
				{op: "ok a", states: "a=idle", order: "-", next: "-"},
			},
		},
		{
			name: "ready twice is queued once, in first-come order",
			steps: []queueStep{
				{op: "ready b", order: "b"},
				{op: "ready a", order: "b a"},
				{op: "ready b", order: "b a", next: "b"},
			},
		},
		{
			name:    "no more jobs than workers",
			workers: 2,
			steps: []queueStep{
				{op: "ready a"}, {op: "ready b"}, {op: "ready c"},
				{op: "start", next: "b"},
				{op: "start", states: "a=running b=running c=queued", next: "-"},
				{op: "ok a", next: "c"},
			},
		},
		{
			name: "changed during its job: queued again after it",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"},
				{op: "ready a", states: "a=rerun", order: "-", next: "-"},
				{op: "ok a", states: "a=queued", order: "a", next: "a"},
			},
		},
		{
			name: "changed during a failing job: queued again at once, failures forgotten",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"},
				{op: "ready a"},
				{op: "fail a", states: "a=queued", order: "a", retry: 0},
			},
		},
		{
			name: "gone during its job: forgotten when it ends",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"},
				{op: "gone a", states: "a=gone", forget: false},
				{op: "ok a", states: "a=idle", forget: true},
			},
		},
		{
			name: "gone during a failing job: forgotten, no retry",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"},
				{op: "gone a"},
				{op: "fail a", forget: true, retry: 0},
				{op: "wait 1h", next: "-"},
				{op: "retry", order: "-"},
			},
		},
		{
			name: "gone and back during its job: queued again after it",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"},
				{op: "gone a"},
				{op: "ready a", states: "a=rerun"},
				{op: "ok a", states: "a=queued", order: "a", forget: false},
			},
		},
		{
			name: "changed then gone during its job: forgotten",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"},
				{op: "ready a"},
				{op: "gone a", states: "a=gone"},
				{op: "ok a", forget: true, order: "-"},
			},
		},
		{
			name: "gone while queued: out of the queue at once",
			steps: []queueStep{
				{op: "ready a"}, {op: "ready b"},
				{op: "gone a", forget: true, states: "a=idle b=queued", order: "b", next: "b"},
			},
		},
		{
			name: "vanished before its job read it: forgotten",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"},
				{op: "vanish a", forget: true, states: "a=idle"},
			},
		},
		{
			name: "vanished, but back already: queued again",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"},
				{op: "ready a"},
				{op: "vanish a", forget: false, states: "a=queued", order: "a"},
			},
		},
		{
			name: "failure, then retry time: queued again with the failures kept",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"},
				{op: "fail a", states: "a=retry", order: "-", next: "-", retry: 1 * time.Second},
				{op: "wait 999ms"},
				{op: "retry", states: "a=retry", order: "-"},
				{op: "wait 1ms"},
				{op: "retry", states: "a=queued", order: "a", next: "a"},
				{op: "start"},
				{op: "fail a", states: "a=retry", retry: 2 * time.Second},
				{op: "wait 2s"}, {op: "retry"}, {op: "start"},
				{op: "ok a", states: "a=idle"},
				{op: "ready a"}, {op: "start"},
				{op: "fail a", retry: 1 * time.Second}, // a success reset the failures
			},
		},
		{
			name: "failure, then change: queued at once, backoff reset",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"}, {op: "fail a", retry: time.Second},
				{op: "retry"}, {op: "wait 1s"}, {op: "retry"}, {op: "start"},
				{op: "fail a", retry: 2 * time.Second},
				{op: "ready a", states: "a=queued", order: "a"},
				{op: "start"},
				{op: "fail a", retry: 1 * time.Second},
			},
		},
		{
			name: "invalid file: no retry on a timer, queued again when it changes",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"},
				{op: "invalid a", states: "a=idle", retry: 0, next: "-"},
				{op: "wait 1h"},
				{op: "retry", states: "a=idle", order: "-"},
				{op: "ready a", states: "a=queued", order: "a"},
				{op: "start"},
				{op: "fail a", retry: time.Second}, // the change reset the failures
			},
		},
		{
			name: "failure, then writes: held until ready, no retry meanwhile",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"}, {op: "fail a", retry: time.Second},
				{op: "hold a", states: "a=idle"},
				{op: "wait 1h"},
				{op: "retry", states: "a=idle", order: "-"},
				{op: "ready a", states: "a=queued"},
			},
		},
		{
			name: "writes while queued: held out of the queue",
			steps: []queueStep{
				{op: "ready a"}, {op: "ready b"},
				{op: "hold a", states: "a=idle b=queued", order: "b"},
				{op: "hold a", order: "b"},
				{op: "ready a", order: "b a"},
			},
		},
		{
			name: "writes while running: the job is not disturbed",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"},
				{op: "hold a", states: "a=running"},
			},
		},
		{
			name: "not yet: the worker goes to the next file; queued again when due",
			steps: []queueStep{
				{op: "ready a"}, {op: "ready b"}, {op: "start"},
				{op: "notyet a 3s", states: "a=waiting b=queued", order: "b", next: "b", forget: false},
				{op: "start", states: "b=running"},
				{op: "wait 2999ms"},
				{op: "retry", states: "a=waiting", order: "-"},
				{op: "wait 1ms"},
				{op: "retry", states: "a=queued", order: "a", next: "-"}, // b has the only worker
				{op: "ok b", next: "a"},
			},
		},
		{
			name: "not yet keeps the failures: no attempt, no reset",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"}, {op: "fail a", retry: time.Second},
				{op: "wait 1s"}, {op: "retry"}, {op: "start"},
				{op: "notyet a 1s"}, {op: "wait 1s"}, {op: "retry"}, {op: "start"},
				{op: "fail a", retry: 2 * time.Second},
			},
		},
		{
			name: "not yet, then a change: queued at once",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"}, {op: "notyet a 1h"},
				{op: "ready a", states: "a=queued", order: "a", next: "a"},
			},
		},
		{
			name: "not yet, then writes: held until ready, no try meanwhile",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"}, {op: "notyet a 1s"},
				{op: "hold a", states: "a=idle"},
				{op: "wait 1h"},
				{op: "retry", states: "a=idle", order: "-"},
			},
		},
		{
			name: "not yet, then gone: forgotten at once",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"}, {op: "notyet a 1s"},
				{op: "gone a", forget: true, states: "a=idle"},
				{op: "wait 1h"},
				{op: "retry", order: "-"},
			},
		},
		{
			name: "changed during the try: queued again at once",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"}, {op: "ready a"},
				{op: "notyet a 1h", states: "a=queued", order: "a", forget: false},
			},
		},
		{
			name: "gone during the try: forgotten",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"}, {op: "gone a"},
				{op: "notyet a 1h", states: "a=idle", forget: true},
			},
		},
		{
			name: "not yet at shutdown: idle, no try",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"}, {op: "stop"},
				{op: "notyet a 1s", states: "a=idle"},
				{op: "wait 1h"},
				{op: "retry", order: "-"},
			},
		},
		{
			name: "a waiting file does not hold back an unpin",
			steps: []queueStep{
				{op: "unpin x"}, {op: "ready a"}, {op: "start"},
				{op: "notyet a 1s", next: "unpin x"},
			},
		},
		{
			name:    "unpin only when no file is queued or running",
			workers: 2,
			steps: []queueStep{
				{op: "ready a"}, {op: "start"},
				{op: "unpin y x", next: "-"},
				{op: "ready b", next: "b"},
				{op: "start", next: "-"},
				{op: "ok a", next: "-"},
				{op: "ok b", next: "unpin x y"},
				{op: "start", next: "-"},
				{op: "ready c", next: "-"}, // files wait for the unpin job
				{op: "unpin-ok", next: "c"},
				{op: "start"}, {op: "ok c", next: "-"}, // nothing left to unpin
			},
		},
		{
			name: "failed unpin is retried after the backoff",
			steps: []queueStep{
				{op: "unpin x", next: "unpin x"},
				{op: "start"},
				{op: "unpin-fail", next: "-", retry: 1 * time.Second},
				{op: "wait 1s", next: "unpin x"},
				{op: "start"},
				{op: "unpin-fail", next: "-", retry: 2 * time.Second},
				{op: "wait 2s"}, {op: "start"},
				{op: "unpin-ok", next: "-"},
			},
		},
		{
			name: "stopping: nothing starts, failures are not retried",
			steps: []queueStep{
				{op: "ready a"}, {op: "start"}, {op: "ready b"},
				{op: "stop", next: "-"},
				{op: "fail a", states: "a=idle b=queued", retry: 0},
				{op: "unpin x", next: "-"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			workers := max(tt.workers, 1)
			q := newQueue(workers, linearBackoff)
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for i, s := range tt.steps {
				forget, retry := apply(t, q, s.op, &now)
				where := fmt.Sprintf("step %d (%s)", i+1, s.op)
				checkStep(t, where, q, now, s, forget, retry)
			}
		})
	}
}

// apply tells q one op; it returns what done, gone or unpinDone returned.
func apply(t *testing.T, q *queue, o op, now *time.Time) (forget bool, retry time.Duration) {
	t.Helper()
	verb, arg, _ := strings.Cut(string(o), " ")
	switch verb {
	case "ready":
		q.ready(arg)
	case "hold":
		q.hold(arg)
	case "gone":
		forget = q.gone(arg)
	case "start":
		j, ok := q.next(*now)
		if !ok {
			t.Fatalf("%s: no job to start", o)
		}
		q.started(j)
	case "ok", "fail", "invalid", "vanish":
		res := map[string]jobResult{"ok": jobSucceeded, "fail": jobFailed, "invalid": jobInvalid, "vanish": jobVanished}[verb]
		retry, forget = q.done(arg, res, *now)
	case "notyet":
		path, in, _ := strings.Cut(arg, " ")
		d, err := time.ParseDuration(in)
		if err != nil {
			t.Fatal(err)
		}
		forget = q.notYet(path, now.Add(d))
	case "retry":
		q.retry(*now)
	case "wait":
		d, err := time.ParseDuration(arg)
		if err != nil {
			t.Fatal(err)
		}
		*now = now.Add(d)
	case "unpin":
		q.addUnpin(strings.Fields(arg))
	case "unpin-ok", "unpin-fail":
		retry = q.unpinDone(q.unpins(), verb == "unpin-fail", *now)
	case "stop":
		q.stop()
	default:
		t.Fatalf("unknown op %q", o)
	}
	return forget, retry
}

func checkStep(t *testing.T, where string, q *queue, now time.Time, s queueStep, forget bool, retry time.Duration) {
	t.Helper()
	for _, kv := range strings.Fields(s.states) {
		path, want, _ := strings.Cut(kv, "=")
		if got := q.state(path).String(); got != want {
			t.Errorf("%s: state of %s = %s, want %s", where, path, got, want)
		}
	}
	if s.order != "" {
		want := strings.Fields(strings.TrimPrefix(s.order, "-"))
		if got := q.order; !slices.Equal(got, want) && (len(got) > 0 || len(want) > 0) {
			t.Errorf("%s: order = %q, want %q", where, got, want)
		}
		if q.depth() != len(want) {
			t.Errorf("%s: depth = %d, want %d", where, q.depth(), len(want))
		}
	}
	if s.next != "" {
		got := "-"
		if j, ok := q.next(now); ok {
			got = j.path
			if j.unpin != nil {
				got = "unpin " + strings.Join(j.unpin, " ")
			}
		}
		if got != s.next {
			t.Errorf("%s: next = %q, want %q", where, got, s.next)
		}
	}
	verb, _, _ := strings.Cut(string(s.op), " ")
	switch verb {
	case "ok", "fail", "invalid", "vanish", "gone", "notyet":
		if forget != s.forget {
			t.Errorf("%s: forget = %v, want %v", where, forget, s.forget)
		}
	}
	if (verb == "fail" || verb == "invalid" || verb == "unpin-fail") && retry != s.retry {
		t.Errorf("%s: retry in %s, want %s", where, retry, s.retry)
	}
}

// TestQueueWake checks the deadlines the loop must wake for.
func TestQueueWake(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	q := newQueue(2, linearBackoff)
	if w := q.wake(); !w.IsZero() {
		t.Fatalf("wake of an empty queue = %v, want zero", w)
	}
	q.ready("a")
	q.ready("b")
	for range 2 {
		j, _ := q.next(now)
		q.started(j)
	}
	q.done("a", jobFailed, now)                   // retry at +1s
	q.done("b", jobFailed, now.Add(-time.Second)) // retry at now
	if got, want := q.wake(), now; !got.Equal(want) {
		t.Errorf("wake = %v, want %v (b's retry)", got, want)
	}
	q.retry(now)
	if got, want := q.wake(), now.Add(time.Second); !got.Equal(want) {
		t.Errorf("wake = %v, want %v (a's retry)", got, want)
	}
	q.gone("a")
	if w := q.wake(); !w.IsZero() {
		t.Errorf("wake after the failed file went = %v, want zero", w)
	}
	j, _ := q.next(now)
	q.started(j)
	q.notYet("b", now.Add(time.Minute))
	if got, want := q.wake(), now.Add(time.Minute); !got.Equal(want) {
		t.Errorf("wake = %v, want %v (b's next try)", got, want)
	}
}

// TestQueueForgetsIdleEntries checks that the queue keeps only paths with
// something to do or a failure to back off from, so that its size follows the
// work, not the number of files.
func TestQueueForgetsIdleEntries(t *testing.T) {
	t.Parallel()
	now := time.Now()
	q := newQueue(1, linearBackoff)
	for _, p := range []string{"a", "b", "c"} {
		q.ready(p)
		j, _ := q.next(now)
		q.started(j)
		res := jobSucceeded
		if p == "b" {
			q.stop() // b fails at shutdown: idle, but its failure is kept
			res = jobFailed
		}
		q.done(p, res, now)
		q.stopping = false
	}
	if len(q.entries) != 1 || q.failures("b") != 1 {
		t.Errorf("entries = %v, want only b with 1 failure", q.entries)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	b := Backoff{Min: time.Second, Max: 10 * time.Second}
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second}, {5, 10 * time.Second}, {100, 10 * time.Second}} {
		if got := b.base(tt.n); got != tt.want {
			t.Errorf("base(%d) = %s, want %s", tt.n, got, tt.want)
		}
		for range 50 {
			if got := b.Delay(tt.n); got > tt.want || got < tt.want*3/4 {
				t.Fatalf("Delay(%d) = %s, want within [%s, %s]", tt.n, got, tt.want*3/4, tt.want)
			}
		}
	}
}
