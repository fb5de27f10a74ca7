package main

import (
	"io"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

func TestDaemonSetDone(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		gen      int64
		st       appsv1.DaemonSetStatus
		done     bool
		progress string
	}{
		{"just created", 1, appsv1.DaemonSetStatus{}, false, "not yet seen by its controller"},
		{"no node", 1, appsv1.DaemonSetStatus{ObservedGeneration: 1}, true, "0 of 0 pods done"},
		{"pods unpinning", 1, appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3, NumberAvailable: 1}, false, "1 of 3 pods done"},
		{"not all created", 1, appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 2, NumberAvailable: 2}, false, "2 of 3 pods done"},
		{"all done", 2, appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3, NumberAvailable: 3}, true, "3 of 3 pods done"},
		{"new spec not seen", 3, appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3, NumberAvailable: 3}, false, "not yet seen by its controller"},
	} {
		ds := &appsv1.DaemonSet{Status: tt.st}
		ds.Generation = tt.gen
		if done, progress := daemonSetDone(ds); done != tt.done || progress != tt.progress {
			t.Errorf("%s: daemonSetDone = %v, %q; want %v, %q", tt.name, done, progress, tt.done, tt.progress)
		}
	}
}

func TestUnpinWaitUsage(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--wait-daemonset", "x", "--all"}, "--wait-daemonset unpins nothing"},
		{[]string{"--wait-daemonset", "x"}, "--wait-daemonset needs --wait-namespace"},
		{[]string{"--wait-daemonset", "x", "--wait-namespace", "n", "--wait-timeout", "0s"}, "--wait-timeout must be positive"},
	} {
		_, err := parseUnpin(tt.args, env{}.lookup, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("unpin %q: %v, want %q", tt.args, err, tt.want)
		}
	}
	cfg, err := parseUnpin([]string{"--wait-daemonset", "imagedrop-unpin", "--wait-namespace", "imagedrop"}, env{}.lookup, io.Discard)
	if err != nil || cfg.wait.daemonSet != "imagedrop-unpin" || cfg.wait.namespace != "imagedrop" {
		t.Errorf("unpin --wait-daemonset: %+v, %v", cfg.wait, err)
	}
}
