package main

import (
	"strings"
	"testing"
	"time"
)

func TestCompressedOverlap(t *testing.T) {
	runs := func(wall time.Duration) []sample { return []sample{{wall: wall}} }
	s := time.Second
	c := compressedRuns{plain: runs(2 * s), decoded: []decodedRuns{
		{key: "zst", runs: runs(2200 * time.Millisecond), beside: runs(2100 * time.Millisecond), floor: 400 * time.Millisecond},
		{key: "gz", runs: runs(1900 * time.Millisecond), floor: 200 * time.Millisecond},
	}}
	got := compressedOverlap(c)
	for _, want := range []string{
		"Decoding the .tar.zst alone takes 0.40 s on one core (floors above); its import took 2.20 s", "50% of it showed",
		"it made that import take 2.10 s (containerd's CPU 0.00 s): 25% of it showed there, and the .tar.zst import took 1.05× of it.",
		"Decoding the .tar.gz alone takes 0.20 s", "took 1.90 s (imagedrop's CPU 0.00 s, containerd's 0.00 s): none of it showed",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("compressedOverlap says %q; want %q in it", got, want)
		}
	}
	if got := compressedOverlap(compressedRuns{plain: runs(2 * s)}); got != "" {
		t.Errorf("compressedOverlap without compressed runs = %q, want nothing", got)
	}
}
