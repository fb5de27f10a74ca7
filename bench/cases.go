package main

import (
	"context"
	"os"
	"path/filepath"
	"time"
)

// caseRun is what the cases run against one containerd share: where they
// run, the section of the report they fill, and what a case takes from an
// earlier one.
type caseRun struct {
	e         *runtimeEnv
	sec       *section
	sizeName  string // the size of the large archives, as the report writes it
	plainSize int64  // bytes of the plain .tar
	// decodeFloor is how long decoding each compressed input alone took,
	// by key (one of the floors); case 3 measures its imports against it.
	decodeFloor map[string]time.Duration
	// plainRuns are case 1's imagedrop runs, whose peak RSS case 8 reports.
	plainRuns []sample
}

// runCases runs every case against e, in the order of the report's rows,
// and returns the section of the report.
func (b *bench) runCases(ctx context.Context, e *runtimeEnv) (*section, error) {
	r := &caseRun{e: e, sec: &section{containerd: e.c.Version}, sizeName: formatBytes(b.cfg.size),
		decodeFloor: map[string]time.Duration{}}
	if b.in.plain != "" {
		st, err := os.Stat(b.in.plain)
		if err != nil {
			return nil, err
		}
		r.plainSize = st.Size()
	}
	for _, step := range []func(context.Context, *caseRun) error{
		b.floors,         // the disk, the hash and the decoders, on the same bytes; case 3 reads them
		b.plainCase,      // 1. plain archive, no unpack
		b.layersCase,     // 2. many layers
		b.compressedCase, // 3. compressed archives, and the pipelines they replace
		b.presentCase,    // 4. blobs already present
		b.unpackCase,     // 5. import including unpack
		b.latencyCase,    // 6. rename → image visible
		b.manyCase,       // 7. many archives at once
		b.rssCase,        // 8. peak RSS
		b.restartCase,    // 9. restart with unchanged archives
		b.imageListCase,  // 10. image lists
		b.verifyCase,     // 11. verified imports (issue #24)
		b.bundleCase,     // 12. an air-gap bundle, watched (issue #23)
		b.scalingCase,    // 13. the same image at growing sizes (issue #23)
		b.podCase,        // 14. drop to Pod Running on a single-node cluster (issue #23)
	} {
		if err := step(ctx, r); err != nil {
			return nil, err
		}
	}
	return r.sec, nil
}

// compressedInput is a compressed copy of the plain .tar: its key (the
// suffix after .tar.), the tool that wrote it and decodes it in the
// pipelines, and the decoder imagedrop reads it with.
type compressedInput struct{ key, tool, file, decoder string }

func (b *bench) compressedInputs() []compressedInput {
	return []compressedInput{
		{"zst", "zstd", b.in.zst, "zstd, one goroutine, checksum verified"},
		{"gz", "gzip", b.in.gz, "gzip"},
	}
}

// floors times, on the same bytes in the same run, what no import can beat:
// writing the plain .tar to the disk, hashing it, and decoding each
// compressed input.
func (b *bench) floors(ctx context.Context, r *caseRun) error {
	if !b.want("floor") {
		return nil
	}
	in := b.in
	ddOut := filepath.Join(b.work, "dd.out")
	// Each floor: what runs it, and its label in the report.
	type floorRun struct {
		c     contender
		label string
	}
	floorRuns := []floorRun{
		{b.ddCopy("dd bs=4M conv=fsync (plain .tar → disk)", in.plain, ddOut), "dd bs=4M conv=fsync of the plain .tar to the same disk"},
		{b.floorCommand("sha256sum (plain .tar, page cache)", []string{in.plain}, []string{"sha256sum", in.plain}, nil),
			"sha256sum of the plain .tar from page cache"},
		{contender{label: "Go crypto/sha256 (plain .tar, page cache)", files: []string{in.plain}, run: func(context.Context, string) (sample, error) {
			return hashFile(in.plain)
		}}, "Go crypto/sha256 (what containerd hashes with) of the plain .tar from page cache, in the bench process"},
	}
	compressed := b.compressedInputs()
	for _, z := range compressed {
		floorRuns = append(floorRuns, floorRun{b.floorCommand(z.tool+" -dc .tar."+z.key+" > /dev/null", []string{z.file}, shell(z.tool+" -dc "+quote(z.file)+" > /dev/null"), nil),
			z.tool + " -dc of the .tar." + z.key + " to /dev/null"})
	}
	decodeFloor := map[string]int{} // the floor of decoding each compressed file, by key
	for _, z := range compressed {
		decodeFloor[z.key] = len(floorRuns)
		floorRuns = append(floorRuns, floorRun{contender{label: "Go " + z.tool + " decode (.tar." + z.key + ", page cache)", files: []string{z.file}, run: func(context.Context, string) (sample, error) {
			return decodeFile(z.file)
		}}, "decoding the .tar." + z.key + " in the bench process as imagedrop does (klauspost/compress " + z.decoder + "), to io.Discard"})
	}
	floorCs := make([]contender, len(floorRuns))
	for i, f := range floorRuns {
		floorCs[i] = f.c
	}
	floors, err := b.compare(ctx, r.e, "floor", floorCs)
	if err != nil {
		return err
	}
	for i, f := range floorRuns {
		r.sec.floors = append(r.sec.floors, floorRow{label: f.label, d: walls(floors[i]), bytes: r.plainSize})
	}
	for key, i := range decodeFloor {
		r.decodeFloor[key] = median(walls(floors[i]))
	}
	return nil
}
