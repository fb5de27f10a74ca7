package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/imagedrop/imagedrop/importer"
)

// errFilesFailed means at least one file of an import failed; each was
// already reported on its own line.
var errFilesFailed = errors.New("some files failed")

// runImport imports each file once, in order, trying all of them, and
// prints one line per file.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg commonConfig
	fs := newFlagSet("import", "import [flags] FILE...", stderr)
	cfg.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return usageError{errors.New("import: no files given")}
	}
	if err := cfg.validate(); err != nil {
		return usageError{err}
	}
	log := cfg.logger(stderr)

	client, err := cfg.connect(ctx)
	if err != nil {
		return err
	}
	defer client.Close()
	im, err := importer.New(client, cfg.importer, log)
	if err != nil {
		return err
	}

	failed := 0
	for _, path := range fs.Args() {
		start := time.Now()
		res, err := im.Process(ctx, path)
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %v\n", path, err)
			continue
		}
		fmt.Fprintf(stdout, "OK   %s: %s (%s, %d bytes, %s)\n", path, joinOr(res.Images, "no images"),
			describe(res), res.BytesRead, time.Since(start).Round(time.Millisecond))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d files: %w", failed, fs.NArg(), errFilesFailed)
	}
	return nil
}

func describe(res importer.Result) string {
	if res.Kind == importer.KindList {
		return "list"
	}
	s := string(res.Compression) + " archive"
	if res.Unpacked > 0 {
		s += fmt.Sprintf(", %d unpacked", res.Unpacked)
	}
	if res.SkippedPlatforms > 0 {
		s += fmt.Sprintf(", %d platforms not in archive", res.SkippedPlatforms)
	}
	return s
}
