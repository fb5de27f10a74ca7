package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseScalingSizes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    []int64
		wantErr string
	}{
		{in: "1GiB,4GiB,16GiB", want: []int64{1 << 30, 4 << 30, 16 << 30}},
		{in: " 256MiB, 64MiB ,1GiB", want: []int64{64 << 20, 256 << 20, 1 << 30}},
		{in: "32MiB", want: []int64{32 << 20}},
		{in: "1GiB,1GiB", wantErr: "1 GiB given twice"},
		{in: "1GiB,3GiB,6GiB,1536MiB", wantErr: "1536 MiB is not a whole multiple of the smallest size, 1 GiB"},
		{in: "1MiB,32MiB", wantErr: "32 MiB is 32× the smallest size, 128 layers; at most 125"},
		{in: "1MiB,31MiB", want: []int64{1 << 20, 31 << 20}},
		{in: "512KiB,1GiB", wantErr: `"512KiB": below 1MiB`},
		{in: "1GiB,", wantErr: `size ""`},
		{in: "lots", wantErr: `size "lots"`},
	} {
		got, err := parseScalingSizes(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseScalingSizes(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseScalingSizes(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestScalingFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args   []string
		sizes  []int64
		rounds int
	}{
		{nil, []int64{1 << 30, 4 << 30, 16 << 30}, 3},
		{[]string{"-quick"}, []int64{64 << 20, 256 << 20, 1 << 30}, 1},
		{[]string{"-quick", "-scaling-sizes", "32MiB,64MiB", "-scaling-rounds", "2"}, []int64{32 << 20, 64 << 20}, 2},
	} {
		c, err := parseConfig(tc.args, io.Discard)
		if err != nil {
			t.Fatalf("parseConfig(%q): %v", tc.args, err)
		}
		if !slices.Equal(c.scalingSizes, tc.sizes) || c.scalingRounds != tc.rounds {
			t.Errorf("parseConfig(%q): sizes %v, rounds %d; want %v, %d", tc.args, c.scalingSizes, c.scalingRounds, tc.sizes, tc.rounds)
		}
	}
	if _, err := parseConfig([]string{"-scaling-rounds", "0"}, io.Discard); err == nil {
		t.Error("parseConfig(-scaling-rounds 0) succeeded; want an error")
	}
}

func TestScalingLayers(t *testing.T) {
	t.Parallel()
	const step = 64<<20 + 3 // not a multiple of 100: the last layer of a step takes the rest
	unit := scalingLayers(step, step)
	if len(unit) != len(scalingMix) {
		t.Fatalf("one step: %d layers, want %d", len(unit), len(scalingMix))
	}
	for _, n := range []int64{1, 4, 16} {
		got := scalingLayers(n*step, step)
		var sum int64
		for _, l := range got {
			sum += l
		}
		if sum != n*step || len(got) != int(n)*len(scalingMix) {
			t.Errorf("%d steps: %d layers of %d bytes in all; want %d layers of %d", n, len(got), sum, int(n)*len(scalingMix), n*step)
		}
		for i := range got {
			if got[i] != unit[i%len(unit)] {
				t.Errorf("%d steps: layer %d has %d bytes, want %d (the same mix as one step)", n, i, got[i], unit[i%len(unit)])
				break
			}
		}
	}
	if want := step * scalingMix[0] / 100; unit[0] != want {
		t.Errorf("first layer of a step: %d bytes, want %d", unit[0], want)
	}
}

func TestPerGiB(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d     time.Duration
		bytes int64
		want  time.Duration
	}{
		{4 * time.Second, 1 << 30, 4 * time.Second},
		{16 * time.Second, 4 << 30, 4 * time.Second},
		{time.Second, 256 << 20, 4 * time.Second},
		{time.Second, 0, 0},
	} {
		if got := perGiB(tc.d, tc.bytes); got != tc.want {
			t.Errorf("perGiB(%s, %d) = %s, want %s", tc.d, tc.bytes, got, tc.want)
		}
	}
}

func TestWithinBand(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ratio, band float64
		want        bool
	}{
		{1, 0.15, true}, {1.15, 0.15, true}, {0.85, 0.15, true}, {1.151, 0.15, false}, {0.849, 0.15, false},
		{1.1, 0.10, true}, {0.9, 0.10, true}, {1.11, 0.10, false},
	} {
		if got := withinBand(tc.ratio, tc.band); got != tc.want {
			t.Errorf("withinBand(%v, %v) = %t, want %t", tc.ratio, tc.band, got, tc.want)
		}
	}
}

func TestScalingShortfall(t *testing.T) {
	t.Parallel()
	const gib = int64(1 << 30)
	for _, tc := range []struct {
		name       string
		size       int64
		work, root disk
		want       []string // in the reason; none: it fits
	}{
		// 3 × 16 GiB, + 5 % + 1 GiB = 51.4 GiB on one disk.
		{"one disk, fits", 16 * gib, disk{1, 52 * gib}, disk{1, 52 * gib}, nil},
		{"one disk, short", 16 * gib, disk{1, 50 * gib}, disk{1, 50 * gib}, []string{"needs 51.40 GiB free on the disk of the work directory and containerd's root", "50.00 GiB free"}},
		// 2 × 16 GiB, + 5 % + 1 GiB = 34.6 GiB on each.
		{"two disks, fit", 16 * gib, disk{1, 35 * gib}, disk{2, 35 * gib}, nil},
		{"two disks, root short", 16 * gib, disk{1, 35 * gib}, disk{2, 34 * gib}, []string{"needs 34.60 GiB free under containerd's root", "34.00 GiB free"}},
		{"two disks, both short", 16 * gib, disk{1, 10 * gib}, disk{2, 20 * gib}, []string{"in the work directory", "10.00 GiB free; needs 34.60 GiB free under containerd's root"}},
	} {
		got := scalingShortfall(tc.size, tc.work, tc.root)
		if len(tc.want) == 0 && got != "" {
			t.Errorf("%s: scalingShortfall = %q, want it to fit", tc.name, got)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: scalingShortfall = %q, want %q in it", tc.name, got, w)
			}
		}
	}
}

func TestScalingRows(t *testing.T) {
	t.Parallel()
	runs := func(rssMiB int64, walls ...float64) []sample {
		var out []sample
		for _, w := range walls {
			out = append(out, sample{wall: time.Duration(w * float64(time.Second)), rssKiB: rssMiB << 10})
		}
		return out
	}
	const gib = int64(1 << 30)
	res := scalingResult{ctrLabel: "ctr import --local (unpacks)", runs: []scalingRun{
		{size: gib, bytes: gib, layers: 4, id: runs(40, 4, 3.9, 4.1)},
		{size: 4 * gib, bytes: 4 * gib, layers: 16, id: runs(42, 18, 18.2, 17.8)}, // 4.5 s/GiB: 1.12×; RSS 1.05×
		{size: 8 * gib, bytes: 8 * gib, layers: 32, id: runs(46, 40, 39, 41)},     // 5 s/GiB: 1.25×; RSS 1.15×
		{size: 16 * gib, bytes: 16 * gib, layers: 64, skipped: "needs 51.40 GiB"}, // skipped
	}}
	var got [][]string
	for _, x := range res.rows() {
		got = append(got, x.cells())
	}
	want := [][]string{
		{"13", "4 GiB .tar, 16 layers, with unpack: seconds per GiB", "4.50 s", "imagedrop at 1 GiB (4 layers), s per GiB", "4.00 s", "1.12×", "s/GiB within ±15 % of the 1 GiB run", "yes"},
		{"13", "4 GiB .tar, 16 layers, with unpack: peak RSS (max of 3 runs)", "42.0 MiB", "imagedrop at 1 GiB (4 layers)", "40.0 MiB", "1.05×", "peak RSS within ±10 %", "yes"},
		{"13", "8 GiB .tar, 32 layers, with unpack: seconds per GiB", "5.00 s", "imagedrop at 1 GiB (4 layers), s per GiB", "4.00 s", "1.25×", "s/GiB within ±15 % of the 1 GiB run", "**no**"},
		{"13", "8 GiB .tar, 32 layers, with unpack: peak RSS (max of 3 runs)", "46.0 MiB", "imagedrop at 1 GiB (4 layers)", "40.0 MiB", "1.15×", "peak RSS within ±10 %", "**no**"},
		{"13", "16 GiB .tar, 64 layers, with unpack: seconds per GiB", "—", "—", "—", "—", "s/GiB within ±15 % of the 1 GiB run", "skipped: too little free disk (see case 13 below)"},
		{"13", "16 GiB .tar, 64 layers, with unpack: peak RSS", "—", "—", "—", "—", "peak RSS within ±10 %", "skipped: too little free disk (see case 13 below)"},
	}
	if len(got) != len(want) {
		t.Fatalf("rows: got %d, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("row %d:\n got %q\nwant %q", i, got[i], want[i])
		}
	}
	// Every row survives section.add, which drops rows of cases not run.
	var sec section
	for _, x := range res.rows() {
		sec.add(x)
	}
	if len(sec.rows) != len(want) {
		t.Errorf("section.add kept %d rows of %d", len(sec.rows), len(want))
	}
	if rows := (scalingResult{runs: res.runs[:1]}).rows(); len(rows) != 0 {
		t.Errorf("one size: %d rows, want none (nothing to compare with)", len(rows))
	}
}

func TestScalingTables(t *testing.T) {
	t.Parallel()
	const mib = int64(1 << 20)
	s := func(wall float64, rssMiB int64) []sample {
		return []sample{{wall: time.Duration(wall * float64(time.Second)), rssKiB: rssMiB << 10}}
	}
	res := scalingResult{ctrLabel: "ctr import --local (unpacks)", runs: []scalingRun{
		{size: 256 * mib, bytes: 256 * mib, layers: 4, id: s(1, 40), ctr: s(2, 30), dd: s(0.5, 5)},
		{size: 1024 * mib, bytes: 1024 * mib, layers: 16, id: s(4.8, 48), ctr: s(8, 30), dd: s(2.4, 5)},
		{size: 4096 * mib, layers: 64, skipped: "needs 12.00 GiB free on the disk, 8.00 GiB free"},
	}}
	got := res.tables()
	for _, want := range []string{
		"at the smallest, 256 MiB, one image of 4 layers (40, 30, 20, 10 % of it)",
		"| 1 GiB | 16 | 1.00 GiB | 4.80 s | 4.80 s | 1.20× | **no** | 8.00 s | 8.00 s | 1.00× | 427 MiB/s | 1.20× |",
		"| 256 MiB | 4 | 256 MiB | 1.00 s | 4.00 s | 1.00× | yes | 2.00 s | 8.00 s | 1.00× | 512 MiB/s | 1.00× |",
		"| 1 GiB | 48.0 MiB | 1.20× | **no** | 30.0 MiB | 1.00× |",
		"- 4 GiB (64 layers): skipped: it needs 12.00 GiB free on the disk, 8.00 GiB free.",
		"| 1 GiB | ctr import --local (unpacks) | 8.00 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("tables() lacks %q:\n%s", want, got)
		}
	}
	notRun := scalingResult{runs: []scalingRun{{size: 30 << 30, skipped: "needs 95.50 GiB free"}}}.tables()
	if want := "Not run: at 30 GiB, the smallest size, it needs 95.50 GiB free."; !strings.Contains(notRun, want) {
		t.Errorf("tables() with the smallest size skipped = %q; want %q in it", notRun, want)
	}
	if got := (scalingResult{}).tables(); got != "" {
		t.Errorf("tables() of a case not run = %q, want nothing", got)
	}
}
