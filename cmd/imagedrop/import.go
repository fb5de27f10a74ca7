package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/imagedrop/imagedrop/importer"
)

// errFilesFailed means at least one file of an import failed; each was
// already reported on its own line.
var errFilesFailed = errors.New("some files failed")

// importConfig is the configuration of imagedrop import.
type importConfig struct {
	common   commonConfig
	workers  int
	progress string
	files    []string
}

func (c *importConfig) register(fs *flag.FlagSet) {
	c.common.register(fs)
	c.workers = 2
	fs.IntVar(&c.workers, "workers", c.workers, "files imported at once (results are printed in the order the files are given)")
	c.progress = progressAuto
	fs.StringVar(&c.progress, "progress", c.progress, "progress `MODE`: auto (a line per running file, updated in place, when stderr is a terminal), tty (always) or plain (never)")
}

func (c *importConfig) validate() error {
	if c.workers < 1 {
		return fmt.Errorf("--workers must be at least 1, not %d", c.workers)
	}
	switch c.progress {
	case progressAuto, progressTTY, progressPlain:
	default:
		return fmt.Errorf("--progress %q: want auto, tty or plain", c.progress)
	}
	return c.common.validate()
}

const importExamples = `  imagedrop import images/*.tar.zst
  imagedrop import --extra-registry registry.local:5000 bundle.tar.gz apps.txt
  imagedrop import --containerd-address /run/k3s/containerd/containerd.sock app.tar   # k3s, RKE2
`

// newImportFlags returns import's flag set, bound to cfg.
func newImportFlags(cfg *importConfig, stderr io.Writer) *flag.FlagSet {
	fs := newFlagSet("import", "import [flags] FILE...", importExamples, stderr)
	cfg.register(fs)
	return fs
}

// parseImport reads import's configuration from the environment, then args,
// and validates it.
func parseImport(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (importConfig, error) {
	var cfg importConfig
	fs := newImportFlags(&cfg, stderr)
	if err := parseFlags(fs, args, lookupEnv); err != nil {
		return importConfig{}, err
	}
	cfg.files = fs.Args()
	if len(cfg.files) == 0 {
		fs.Usage()
		return importConfig{}, usageError{errors.New("import: no files given")}
	}
	for _, f := range cfg.files {
		if strings.HasPrefix(f, "-") && f != "-" {
			return importConfig{}, usageError{fmt.Errorf("import: %q after the files: flags go before them (imagedrop import [flags] FILE...)", f)}
		}
	}
	if err := cfg.validate(); err != nil {
		return importConfig{}, usageError{err}
	}
	return cfg, nil
}

// runImport imports each file once, --workers at a time in the order given,
// trying all of them, and prints one line per file, in that order.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseImport(args, os.LookupEnv, helpOutput(args, stdout, stderr))
	if err != nil {
		return err
	}
	paths := cfg.files
	prog := newImportProgress(cfg.progress, stderr, len(paths))
	defer prog.stop()
	log := cfg.common.logger(prog)

	client, err := cfg.common.connect(ctx)
	if err != nil {
		return err
	}
	defer client.Close()
	im, err := importer.New(client, cfg.common.importer, log.With("component", "importer"), cfg.common.pullBackoff())
	if err != nil {
		return err
	}

	cleanup(ctx, im, log)

	start := time.Now()
	outcomes := importAll(ctx, im, paths, cfg.workers, prog)
	failed, read := 0, int64(0)
	for i, path := range paths {
		o := <-outcomes[i]
		read += o.res.BytesRead
		if o.err != nil {
			failed++
			prog.println(stdout, fmt.Sprintf("FAIL %s: %v", path, o.err))
			continue
		}
		prog.println(stdout, fmt.Sprintf("OK   %s: %s (%s, %d bytes, %s)", path, joinOr(o.res.Images, "no images"),
			describe(o.res), o.res.BytesRead, o.took.Round(time.Millisecond)))
	}
	prog.stop()
	prog.println(stderr, summaryLine(len(paths), failed, read, time.Since(start)))
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
func importAll(ctx context.Context, im *importer.Importer, paths []string, workers int, prog importProgress) []chan outcome {
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
				prog.started(i, paths[i])
				res, err := im.Process(ctx, importer.Input{Path: paths[i], Read: func(n int64) { prog.read(i, n) }})
				prog.finished(i)
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
