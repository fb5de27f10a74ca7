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

// runImport imports each file once, --workers at a time in the order given,
// trying all of them, and prints one line per file, in that order.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg commonConfig
	workers := 2
	fs := newFlagSet("import", "import [flags] FILE...", stderr)
	cfg.register(fs)
	fs.IntVar(&workers, "workers", workers, "files imported at once (results are printed in the order the files are given)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return usageError{errors.New("import: no files given")}
	}
	if workers < 1 {
		return usageError{fmt.Errorf("--workers must be at least 1, not %d", workers)}
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

	paths := fs.Args()
	outcomes := importAll(ctx, im, paths, workers)
	failed := 0
	for i, path := range paths {
		o := <-outcomes[i]
		if o.err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %v\n", path, o.err)
			continue
		}
		fmt.Fprintf(stdout, "OK   %s: %s (%s, %d bytes, %s)\n", path, joinOr(o.res.Images, "no images"),
			describe(o.res), o.res.BytesRead, o.took.Round(time.Millisecond))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d files: %w", failed, len(paths), errFilesFailed)
	}
	return nil
}

// outcome is what importing one file gave.
type outcome struct {
	res  importer.Result
	err  error
	took time.Duration
}

// importAll processes paths with workers goroutines, starting them in
// order, and returns a channel per path that delivers its outcome.
func importAll(ctx context.Context, im *importer.Importer, paths []string, workers int) []chan outcome {
	outcomes := make([]chan outcome, len(paths))
	for i := range outcomes {
		outcomes[i] = make(chan outcome, 1)
	}
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range paths {
			next <- i
		}
	}()
	for range min(workers, len(paths)) {
		go func() {
			for i := range next {
				start := time.Now()
				res, err := im.Process(ctx, paths[i])
				outcomes[i] <- outcome{res: res, err: err, took: time.Since(start)}
			}
		}()
	}
	return outcomes
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
