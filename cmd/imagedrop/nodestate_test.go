package main

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/imagedrop/imagedrop/watcher"
)

func watcherStatus(ready bool, files ...watcher.FileStatus) watcher.Status {
	return watcher.Status{Ready: ready, Files: files}
}

func file(path, state string, attempts int, size int64, err string) watcher.FileStatus {
	return watcher.FileStatus{Path: path, State: state, Attempts: attempts, Size: size, Error: err}
}

// waitingFile is a file of a shared directory that waits for a slot.
func waitingFile(path string, size int64) watcher.FileStatus {
	f := file(path, watcher.StateQueued, 0, size, "")
	f.Waiting = waitingForSlot
	return f
}

// TestNodeCondition maps the watcher's status to the condition, and to
// whether the startup taint goes under each policy, at and past the timeout.
func TestNodeCondition(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	for _, tt := range []struct {
		name                   string
		s                      watcher.Status
		want                   nodeCondition
		keep, removeAfter, out bool // taint due: keep policy, remove-after before the timeout, and after it
	}{
		{"nothing yet", watcherStatus(false), nodeCondition{corev1.ConditionFalse, reasonPreloading, "0 of 0 files done (0 of 0)"}, false, false, true},
		{"preloading", watcherStatus(false, file("a.tar", watcher.StateDone, 1, 2*mib, ""), file("b.tar", watcher.StateRunning, 1, 6*mib, "")),
			nodeCondition{corev1.ConditionFalse, reasonPreloading, "1 of 2 files done (2MiB of 8MiB)"}, false, false, true},
		{"preloading, one failing", watcherStatus(false, file("a.tar", watcher.StateFailed, 1, mib, "bad"), file("b.tar", watcher.StateQueued, 0, mib, "")),
			nodeCondition{corev1.ConditionFalse, reasonPreloading, "0 of 2 files done (0 of 2MiB), 1 failing"}, false, false, true},
		{"preloading, one waiting for a slot", watcherStatus(false, file("a.tar", watcher.StateDone, 1, mib, ""), waitingFile("shared.tar", 4*mib)),
			nodeCondition{corev1.ConditionFalse, reasonPreloading, "1 of 2 files done (1MiB of 5MiB); 1 waiting for a shared-import slot"}, false, false, true},
		{"preloading, failing and waiting", watcherStatus(false, file("a.tar", watcher.StateFailed, 1, mib, "bad"), waitingFile("s1.tar", mib), waitingFile("s2.tar", mib)),
			nodeCondition{corev1.ConditionFalse, reasonPreloading, "0 of 3 files done (0 of 3MiB), 1 failing; 2 waiting for a shared-import slot"}, false, false, true},
		{"complete", watcherStatus(true, file("a.tar", watcher.StateDone, 1, mib, ""), file("l.txt", watcher.StateDone, 0, 0, "")),
			nodeCondition{corev1.ConditionTrue, reasonComplete, "2 files done (1MiB)"}, true, true, true},
		{"complete, empty", watcherStatus(true), nodeCondition{corev1.ConditionTrue, reasonComplete, "0 files done (0)"}, true, true, true},
		{"failing", watcherStatus(true, file("a.tar", watcher.StateDone, 1, mib, ""), file("bad.tar", watcher.StateFailed, 1, 5, "no manifest")),
			nodeCondition{corev1.ConditionFalse, reasonFailing, "1 of 2 files failing (see imagedrop's /status and the node's Events)"}, false, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := summarize(tt.s)
			if got := p.condition(); got != tt.want {
				t.Errorf("condition() = %+v; want %+v", got, tt.want)
			}
			keep := nodeConfig{taintPolicy: taintKeep, taintTimeout: time.Minute}
			after := nodeConfig{taintPolicy: taintRemoveAfter, taintTimeout: time.Minute}
			for _, c := range []struct {
				cfg   nodeConfig
				since time.Duration
				want  bool
			}{
				{keep, time.Hour, tt.keep},
				{after, time.Minute - 1, tt.removeAfter},
				{after, time.Minute, tt.out},
			} {
				if got, why := c.cfg.taintDue(p, c.since); got != c.want || got != (why != "") {
					t.Errorf("taintDue(%s, %s after start) = %v, %q; want %v with a reason", c.cfg.taintPolicy, c.since, got, why, c.want)
				}
			}
		})
	}
}

// TestNewFailures checks that each failed attempt of a file is reported
// once, and that a file that went away is forgotten.
func TestNewFailures(t *testing.T) {
	t.Parallel()
	seen := map[string]attempt{}
	steps := []struct {
		s    watcher.Status
		want []fileFailure
	}{
		{watcherStatus(false, file("a.tar", watcher.StateRunning, 1, 1, "")), nil},
		{watcherStatus(false, file("a.tar", watcher.StateFailed, 1, 1, "boom")), []fileFailure{{"a.tar", "boom"}}},
		{watcherStatus(false, file("a.tar", watcher.StateFailed, 1, 1, "boom")), nil},
		{watcherStatus(true, file("a.tar", watcher.StateFailed, 2, 1, "boom again"), file("b.tar", watcher.StateFailed, 1, 1, "bad")),
			[]fileFailure{{"a.tar", "boom again"}, {"b.tar", "bad"}}},
		{watcherStatus(true, file("b.tar", watcher.StateDone, 2, 1, "")), nil},
		{watcherStatus(true, file("a.tar", watcher.StateFailed, 1, 1, "back")), []fileFailure{{"a.tar", "back"}}},
	}
	for i, st := range steps {
		if got := newFailures(seen, st.s); !slices.Equal(got, st.want) {
			t.Errorf("step %d: newFailures = %+v; want %+v", i, got, st.want)
		}
	}
	if _, ok := seen["b.tar"]; ok {
		t.Errorf("seen still has b.tar, which went away: %v", seen)
	}
}

func TestNodeConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{nil, ""},
		{[]string{"--node-name", "n1", "--startup-taint", "", "--node-label", "imagedrop.io/preloaded=true", "--taint-policy", "remove-after"}, ""},
		{[]string{"--startup-taint", "imagedrop.io/preloading"}, `--startup-taint "imagedrop.io/preloading": want key[=value]:Effect`},
		{[]string{"--startup-taint", "a:Sometimes"}, `--startup-taint "a:Sometimes": effect "Sometimes", want NoSchedule, PreferNoSchedule or NoExecute`},
		{[]string{"--startup-taint", "bad key:NoSchedule"}, `--startup-taint "bad key:NoSchedule": bad key "bad key"`},
		{[]string{"--node-label", "novalue"}, `--node-label "novalue": want key=value, a valid label key and value`},
		{[]string{"--taint-policy", "never"}, `--taint-policy "never": want keep or remove-after`},
		{[]string{"--taint-timeout", "0s"}, "--taint-timeout 0s: must be positive"},
		{[]string{"--node-status-interval", "10ms"}, "--node-status-interval 10ms: must be at least 1s"},
		{[]string{"--event-burst", "0"}, "--event-burst 0: must be at least 1"},
		{[]string{"--event-rate", "0"}, "--event-rate 0: must be positive"},
		{[]string{"--node-condition", "not a type"}, `--node-condition "not a type": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`},
		{[]string{"--kubeconfig", "/nonexistent"}, "--kubeconfig: stat /nonexistent: no such file or directory"},
		{[]string{"--node-name", "n1", "--kubeconfig", "/nonexistent"}, "--kubeconfig: stat /nonexistent: no such file or directory"},
	} {
		if got := errString(parsedWatch(t, tt.args...).node.validate()); got != tt.wantErr {
			t.Errorf("%q: validate() = %q; want %q", tt.args, got, tt.wantErr)
		}
	}
}

// TestConditionDue checks the bounded rate of condition writes: a change of
// status or reason at once, of the message after the interval, none (the
// heartbeat) after five.
func TestConditionDue(t *testing.T) {
	t.Parallel()
	r := &nodeReporter{cfg: nodeConfig{statusInterval: time.Minute}}
	t0 := time.Unix(1_000_000, 0)
	sent := nodeCondition{corev1.ConditionFalse, reasonPreloading, "1 of 2 files done"}
	for _, tt := range []struct {
		name string
		st   nodeSync
		c    nodeCondition
		at   time.Duration // after the last write
		want bool
	}{
		{"never written", nodeSync{}, sent, 0, true},
		{"status changed", nodeSync{sent: sent, sentAt: t0}, nodeCondition{corev1.ConditionTrue, reasonComplete, "2 files done"}, time.Second, true},
		{"reason changed", nodeSync{sent: sent, sentAt: t0}, nodeCondition{corev1.ConditionFalse, reasonFailing, "x"}, time.Second, true},
		{"message changed, too soon", nodeSync{sent: sent, sentAt: t0}, nodeCondition{sent.status, sent.reason, "2 of 2"}, time.Minute - 1, false},
		{"message changed, interval passed", nodeSync{sent: sent, sentAt: t0}, nodeCondition{sent.status, sent.reason, "2 of 2"}, time.Minute, true},
		{"unchanged, interval passed", nodeSync{sent: sent, sentAt: t0}, sent, 4 * time.Minute, false},
		{"unchanged, heartbeat due", nodeSync{sent: sent, sentAt: t0}, sent, 5 * time.Minute, true},
	} {
		if got := r.conditionDue(&tt.st, tt.c, t0.Add(tt.at)); got != tt.want {
			t.Errorf("%s: conditionDue = %v; want %v", tt.name, got, tt.want)
		}
	}
}
