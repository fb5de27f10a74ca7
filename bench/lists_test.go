package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSweep(t *testing.T) {
	for _, tc := range []struct {
		refs int
		want []int
	}{
		{20, []int{1, 2, 3, 4, 8, 20}},
		{8, []int{1, 2, 3, 4, 8}},
		{3, []int{1, 2, 3, 4, 8}},
		{6, []int{1, 2, 3, 4, 6, 8}},
	} {
		if got := sweep(tc.refs); !slices.Equal(got, tc.want) {
			t.Errorf("sweep(%d) = %v, want %v", tc.refs, got, tc.want)
		}
	}
	if !slices.Equal(listSweep, []int{1, 2, 3, 4, 8}) {
		t.Errorf("sweep changed listSweep: %v", listSweep)
	}
}

func TestBestRun(t *testing.T) {
	run := func(label string, walls ...time.Duration) listRun {
		r := listRun{label: label}
		for _, w := range walls {
			r.runs = append(r.runs, sample{wall: w})
		}
		return r
	}
	runs := []listRun{
		run("c1", 5*time.Second, 1*time.Second, 6*time.Second), // fastest single run, slowest median
		run("c3", 2*time.Second, 3*time.Second, 2*time.Second),
		run("c8", 3*time.Second, 3*time.Second, 2*time.Second),
	}
	if got := bestRun(runs).label; got != "c3" {
		t.Errorf("bestRun = %s, want c3 (lowest median)", got)
	}
}

func TestMemoryControl(t *testing.T) {
	run := func(label string, concurrency int, wall time.Duration) listRun {
		return listRun{label: label, concurrency: concurrency, isDefault: concurrency == 3, runs: []sample{{wall: wall}}}
	}
	peer := run("loop", 0, 2*time.Second)
	for _, tc := range []struct {
		name          string
		disk, memory  time.Duration // imagedrop's default; the loops take 2 s
		want, notWant string
	}{
		{"gap is the disk", 1400 * time.Millisecond, 900 * time.Millisecond, "the same code meets ≤ 0.5×", "not the only limit"},
		{"gap is not only the disk", 1400 * time.Millisecond, 1200 * time.Millisecond, "not the only limit", "the same code meets"},
		{"met on disk", 900 * time.Millisecond, 800 * time.Millisecond, "(on disk 0.45×)", "the same code meets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			def := run("c3", 3, tc.disk)
			mem := []listRun{run("c3", 3, tc.memory), peer}
			got := memoryControl(def, peer, mem)
			if !strings.Contains(got, tc.want) || strings.Contains(got, tc.notWant) {
				t.Errorf("memoryControl says %q; want it to say %q and not %q", got, tc.want, tc.notWant)
			}
		})
	}
	if got := memoryControl(run("c3", 3, time.Second), peer, nil); got != "" {
		t.Errorf("memoryControl without a control run = %q, want nothing", got)
	}
}
