package main

import (
	"slices"
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
