package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// The pure part of case 13 (issue #23's case 3, scaling): the sizes, the
// image at each size, the room it needs, and its rows of the results table.

// scalingMix is the share, in percent, of each layer of one step of the
// scaling case's image. The smallest size is one step; a size n times it is
// n steps, each of layers of the same sizes, written from their own seeds:
// the layer count and the mix of layer sizes grow with the size, and nothing
// else changes.
var scalingMix = []int64{40, 30, 20, 10}

// scalingMaxLayers is the most layers the largest size may have: docker
// refuses to stack more than 125 (moby's maxLayerDepth).
const scalingMaxLayers = 125

// Flatness targets of case 13: seconds per GiB and peak RSS within these
// shares of the smallest size's.
const (
	scalingTimeBand = 0.15
	scalingRSSBand  = 0.10
)

// parseScalingSizes parses -scaling-sizes, a comma-separated list of sizes
// (parseSize's units), into ascending order. Each must be at least 1MiB and
// a whole multiple of the smallest, and the largest may not need more than
// scalingMaxLayers layers.
func parseScalingSizes(s string) ([]int64, error) {
	var sizes []int64
	for _, f := range strings.Split(s, ",") {
		n, err := parseSize(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		if n < 1<<20 {
			return nil, fmt.Errorf("%q: below 1MiB", strings.TrimSpace(f))
		}
		if slices.Contains(sizes, n) {
			return nil, fmt.Errorf("%s given twice", formatBytes(n))
		}
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	step := sizes[0]
	for _, n := range sizes[1:] {
		if n%step != 0 {
			return nil, fmt.Errorf("%s is not a whole multiple of the smallest size, %s", formatBytes(n), formatBytes(step))
		}
	}
	if layers := int64(len(scalingMix)) * (sizes[len(sizes)-1] / step); layers > scalingMaxLayers {
		return nil, fmt.Errorf("%s is %d× the smallest size, %d layers; at most %d (docker's limit)",
			formatBytes(sizes[len(sizes)-1]), sizes[len(sizes)-1]/step, layers, scalingMaxLayers)
	}
	return sizes, nil
}

// scalingLayers is the bytes of file data of each layer of the image of
// size bytes, in steps of step bytes (the smallest size): scalingMix of
// step, size/step times.
func scalingLayers(size, step int64) []int64 {
	unit := make([]int64, len(scalingMix))
	rest := step
	for i, pct := range scalingMix[:len(scalingMix)-1] {
		unit[i] = step * pct / 100
		rest -= unit[i]
	}
	unit[len(unit)-1] = rest
	var out []int64
	for range size / step {
		out = append(out, unit...)
	}
	return out
}

// perGiB is how long d would take for one GiB at the pace of d for bytes.
func perGiB(d time.Duration, bytes int64) time.Duration {
	if bytes <= 0 {
		return 0
	}
	return time.Duration(float64(d) * (1 << 30) / float64(bytes))
}

// perGiBs is perGiB of each sample's wall time.
func perGiBs(ss []sample, bytes int64) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = perGiB(s.wall, bytes)
	}
	return out
}

// withinBand reports whether ratio is within band of 1 either way (0.15:
// 0.85–1.15, both included).
func withinBand(ratio, band float64) bool { return math.Abs(ratio-1) <= band+1e-9 }

// disk is where a directory is: its filesystem's device and the bytes free
// to an unprivileged writer there.
type disk struct {
	dev  uint64
	free int64
}

// scalingShortfall says why a size of size bytes would not fit, "" if it
// fits. Its archive is written to the work directory (and copied once more
// there by dd, deleted before the next run); each import writes about the
// archive's size of content and as much of snapshots under containerd's
// root. With 5% and 1 GiB to spare.
func scalingShortfall(size int64, work, root disk) string {
	need := func(n int64) int64 { return n + n/20 + 1<<30 }
	short := func(where string, want, free int64) string {
		return fmt.Sprintf("needs %s free %s, %s free", formatApprox(want), where, formatApprox(free))
	}
	if work.dev == root.dev {
		if want := need(3 * size); work.free < want {
			return short("on the disk of the work directory and containerd's root (the archive, then its content and snapshots)", want, work.free)
		}
		return ""
	}
	var out []string
	if want := need(2 * size); work.free < want {
		out = append(out, short("in the work directory (the archive and dd's copy)", want, work.free))
	}
	if want := need(2 * size); root.free < want {
		out = append(out, short("under containerd's root (content and snapshots)", want, root.free))
	}
	return strings.Join(out, "; ")
}

// scalingRun is case 13 at one size: its runs, or why it did not run.
type scalingRun struct {
	size        int64 // bytes of file data in the image's layers
	bytes       int64 // of the archive
	layers      int
	id, ctr, dd []sample // imagedrop import, ctr import, dd's copy
	skipped     string   // why the size was not run; "" if it ran
}

// scalingResult is case 13 against one containerd.
type scalingResult struct {
	ctrLabel string
	runs     []scalingRun // ascending sizes, the smallest first
}

// rows are case 13's rows of the results table: imagedrop's seconds per GiB
// and peak RSS at each size above the smallest, as ratios to the
// smallest's.
func (res scalingResult) rows() []row {
	if len(res.runs) < 2 {
		return nil
	}
	base := res.runs[0]
	baseName := formatBytes(base.size)
	var out []row
	for _, x := range res.runs[1:] {
		what := fmt.Sprintf("%s .tar, %d layers, with unpack", formatBytes(x.size), x.layers)
		timeTarget := fmt.Sprintf("s/GiB within ±%.0f %% of the %s run", 100*scalingTimeBand, baseName)
		rssTarget := fmt.Sprintf("peak RSS within ±%.0f %%", 100*scalingRSSBand)
		if x.skipped != "" || base.skipped != "" {
			const why = "skipped: too little free disk (see case 13 below)"
			out = append(out, row{num: "13", what: what + ": seconds per GiB", target: timeTarget, notYet: why},
				row{num: "13", what: what + ": peak RSS", target: rssTarget, notYet: why})
			continue
		}
		peer := fmt.Sprintf("imagedrop at %s (%d layers)", baseName, base.layers)
		out = append(out,
			row{num: "13", what: what + ": seconds per GiB", id: perGiBs(x.id, x.bytes), peer: peer + ", s per GiB",
				peerD: perGiBs(base.id, base.bytes), target: timeTarget, within: scalingTimeBand},
			row{num: "13", what: what + fmt.Sprintf(": peak RSS (max of %d runs)", len(x.id)), rssKiB: maxRSS(x.id), peer: peer,
				peerRSSKiB: maxRSS(base.id), target: rssTarget, within: scalingRSSBand})
	}
	return out
}
