// Command bench measures imagedrop side by side with the tools it replaces
// (`ctr images import`, local and through the transfer service, and
// decompression pipelines into it) on inputs it generates, against a private
// containerd, and writes the results with the machine's floors to a
// Markdown file. Run it with `make bench` (or `make bench BENCH_FLAGS=-quick`).
//
// Every number in the output comes from the run; nothing is asserted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config is what the command line chooses.
type config struct {
	out           string
	imagedrop     string
	containerds   []string
	workDir       string
	quick         bool
	size          int64
	layers        int
	many          int
	manySize      int64
	rounds        int
	listRounds    int
	zRounds       int
	latencyRounds int
	restartFiles  int
	big           int64
	crictl        string
	listImages    int
	listLayerSize int64
	memoryDir     string // tmpfs for the list case's control; "" leaves it out
	bundleSize    int64  // distinct layer data of the bundle case
	bundleImages  int
	bundleRounds  int
	bundleZstd    int   // zstd level of the bundle case
	podSize       int64 // data of the pod case's image
	podRounds     int
	clusterLock   string          // flock(2)ed while the pod case's cluster runs; "": none
	cases         map[string]bool // empty: all

	scalingSizes  []int64 // sizes of the scaling case, ascending
	scalingRounds int
}

// parseCases returns the cases -cases names; "bundle" stands for its four
// variants.
func parseCases(list string) map[string]bool {
	cases := map[string]bool{}
	for _, k := range strings.Split(list, ",") {
		switch k = strings.TrimSpace(k); k {
		case "":
		case "bundle":
			for _, v := range bundleVariants() {
				cases[v.key] = true
			}
		default:
			cases[k] = true
		}
	}
	return cases
}

func parseConfig(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	var containerds string
	size, manySize, big, listLayerSize, bundleSize, podSize := "1GiB", "1MiB", "4GiB", "4MiB", "4GiB", "256MiB"
	scalingSizes := "1GiB,4GiB,16GiB"
	fs.StringVar(&c.out, "out", "BENCHMARKS.md", "Markdown file to write")
	fs.StringVar(&c.imagedrop, "imagedrop", "bin/imagedrop", "imagedrop binary")
	fs.StringVar(&containerds, "containerd", "/var/cache/imagedrop/containerd-v2.4.2/bin/containerd",
		"containerd binaries to run against, comma-separated; ctr is taken from the same directory")
	fs.StringVar(&c.workDir, "work-dir", "", "where inputs and the disk floor are written (default: a temporary directory, on the disk containerd uses)")
	fs.BoolVar(&c.quick, "quick", false, "small sizes and 2 rounds, for development: 128MiB archives, 40 small archives, no 4GiB run")
	fs.StringVar(&size, "size", size, "size of the large archives")
	fs.IntVar(&c.layers, "layers", 8, "layers of the many-layer archive")
	fs.IntVar(&c.many, "many", 200, "number of small archives")
	fs.StringVar(&manySize, "many-size", manySize, "size of each small archive")
	fs.IntVar(&c.rounds, "rounds", 5, "rounds of each comparison")
	fs.IntVar(&c.listRounds, "list-rounds", 7, "rounds of the list case (short runs that vary more)")
	fs.IntVar(&c.zRounds, "compressed-rounds", 9, "rounds of the compressed case (held to the plain import within 15%, less than the machine's noise)")
	fs.IntVar(&c.latencyRounds, "latency-drops", 10, "archives dropped one by one for the rename → visible latency")
	fs.IntVar(&c.restartFiles, "restart-files", 100, "archives recorded in the state file for the restart case")
	fs.StringVar(&big, "big", big, "size of the archive imported once for peak RSS; 0 skips it")
	fs.StringVar(&c.crictl, "crictl", "/var/cache/imagedrop/bin/crictl", "crictl binary, the peer of the list case (make bench builds it)")
	fs.IntVar(&c.listImages, "list-images", 20, "images in the list of the list case")
	fs.StringVar(&listLayerSize, "list-layer-size", listLayerSize, "size of each of the 2 layers of a list image, uncompressed")
	fs.StringVar(&c.memoryDir, "memory-dir", "/dev/shm", "a tmpfs where the list case runs again on a containerd whose root is in memory, as a control without disk flushes; empty leaves it out")
	fs.StringVar(&bundleSize, "bundle-size", bundleSize, "distinct layer data of the bundle case (issue #23: 4–8GiB); the archives of one image each hold about 3× as much")
	fs.IntVar(&c.bundleImages, "bundle-images", 40, "images in the bundle case")
	fs.IntVar(&c.bundleRounds, "bundle-rounds", 3, "rounds of each bundle case")
	fs.IntVar(&c.bundleZstd, "bundle-zstd-level", 12, "zstd level of the bundle case's .tar.zst (with --long=27; the 19 of published bundles compresses at about 3 MiB/s per core here, hours for the bundle, and decodes at much the same speed)")
	fs.StringVar(&scalingSizes, "scaling-sizes", scalingSizes, "sizes of the scaling case, comma-separated, each a whole multiple of the smallest (issue #23: 1, 4 and 16GiB); the largest needs about 3× its size free")
	fs.IntVar(&c.scalingRounds, "scaling-rounds", 3, "rounds of the scaling case at each size")
	fs.StringVar(&podSize, "pod-size", podSize, "data of the pod case's runnable image (issue #23: 100–500MiB), in two layers over its entrypoint's")
	fs.IntVar(&c.podRounds, "pod-rounds", 5, "rounds of the pod case")
	fs.StringVar(&c.clusterLock, "cluster-lock", "/tmp/k8s-e2e.lock", "file flock(2)ed while the pod case's cluster runs, as every cluster run on this host does; empty if the caller holds it (flock FILE go run ./bench …)")
	cases := fs.String("cases", "", "comma-separated cases to run (floor,plain,layers,compressed,pipes,again,again-named,unpack,latency,many,big,restart,list,verify,bundle-zst,bundle-zst-each,bundle-gz,bundle-gz-each,scaling,pod; bundle: all four bundle cases); default all")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.cases = parseCases(*cases)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.quick {
		for name, v := range map[string]string{"size": "128MiB", "many": "40", "rounds": "2", "list-rounds": "3", "compressed-rounds": "2", "latency-drops": "5", "restart-files": "20", "big": "0", "list-layer-size": "256KiB",
			"bundle-size": "256MiB", "bundle-rounds": "1", "bundle-zstd-level": "3", "scaling-sizes": "64MiB,256MiB,1GiB", "scaling-rounds": "1", "pod-size": "128MiB", "pod-rounds": "2"} {
			if !set[name] {
				_ = fs.Set(name, v)
			}
		}
	}
	for _, sz := range []struct {
		dst *int64
		v   string
	}{{&c.size, size}, {&c.manySize, manySize}, {&c.big, big}, {&c.listLayerSize, listLayerSize}, {&c.bundleSize, bundleSize}, {&c.podSize, podSize}} {
		var err error
		if *sz.dst, err = parseSize(sz.v); err != nil {
			return c, err
		}
	}
	var err error
	if c.scalingSizes, err = parseScalingSizes(scalingSizes); err != nil {
		return c, fmt.Errorf("-scaling-sizes: %w", err)
	}
	for _, s := range strings.Split(containerds, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.containerds = append(c.containerds, s)
		}
	}
	return c, c.validate()
}

// validate reports the first setting out of range.
func (c config) validate() error {
	switch {
	case len(c.containerds) == 0:
		return errors.New("-containerd: none given")
	case c.size < 1<<20 || c.manySize < 4<<10:
		return errors.New("-size must be at least 1MiB and -many-size at least 4KiB")
	case c.layers < 1 || c.many < 1 || c.rounds < 1 || c.listRounds < 1 || c.zRounds < 1 || c.latencyRounds < 1 || c.restartFiles < 1 || c.listImages < 1:
		return errors.New("-layers, -many, -rounds, -list-rounds, -compressed-rounds, -latency-drops, -restart-files and -list-images must be at least 1")
	case c.listLayerSize < 1<<10:
		return errors.New("-list-layer-size must be at least 1KiB")
	case c.bundleSize < 64<<20 || c.bundleImages < 1 || c.bundleRounds < 1 || c.bundleZstd < 1 || c.bundleZstd > 22:
		return errors.New("-bundle-size must be at least 64MiB, -bundle-images and -bundle-rounds at least 1, -bundle-zstd-level 1–22")
	case c.scalingRounds < 1:
		return errors.New("-scaling-rounds must be at least 1")
	case c.podSize < 1<<20 || c.podRounds < 1:
		return errors.New("-pod-size must be at least 1MiB and -pod-rounds at least 1")
	case c.restartFiles > c.many:
		return errors.New("-restart-files must not exceed -many")
	}
	return nil
}

func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			var n int64
			if _, err := fmt.Sscan(num, &n); err != nil {
				return 0, fmt.Errorf("size %q: %w", s, err)
			}
			return n * u.mult, nil
		}
	}
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil {
		return 0, fmt.Errorf("size %q: want bytes, KiB, MiB or GiB", s)
	}
	return n, nil
}

// inputs are the generated archives.
type inputs struct {
	plain, plainAgain, blobNamed, zst, gz, layered, big string
	pod, sandbox                                        string // the pod case's image and the node's sandbox images
	manyDir, restartDir                                 string
	many, latency                                       []string
}

type bench struct {
	cfg    config
	work   string
	in     inputs
	list   *listInput   // nil unless the list case runs
	bundle *bundleFiles // nil unless a bundle case runs
	log    io.Writer
}

// want reports whether case key is to run.
func (b *bench) want(key string) bool { return len(b.cfg.cases) == 0 || b.cfg.cases[key] }

// wantAny reports whether any of the cases keys is to run.
func (b *bench) wantAny(keys ...string) bool { return slices.ContainsFunc(keys, b.want) }

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	for _, tool := range []string{timeBin, "zstd", "gzip", "dd", "sha256sum", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is needed (run e2e/setup.sh): %w", tool, err)
		}
	}
	if cfg.imagedrop, err = filepath.Abs(cfg.imagedrop); err != nil {
		return err
	}
	if _, err := os.Stat(cfg.imagedrop); err != nil {
		return fmt.Errorf("imagedrop binary (run make build): %w", err)
	}
	work := cfg.workDir
	if work == "" {
		if work, err = os.MkdirTemp("", "imagedrop-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	// Notes that could not be kept fail the run now, not once it is over.
	notes, err := readNotes(cfg.out)
	if err != nil {
		return err
	}
	b := &bench{cfg: cfg, work: work, log: stderr}
	rep := &report{started: time.Now(), cfg: cfg}
	rep.machine = describeMachine(work)
	rep.imagedropVersion = commandOutput(cfg.imagedrop, "version")

	b.logf("generating inputs in %s", work)
	if err := b.generate(); err != nil {
		return fmt.Errorf("generate inputs: %w", err)
	}
	if b.want("list") {
		if cfg.memoryDir != "" {
			if err := requireTmpfs(cfg.memoryDir); err != nil {
				return fmt.Errorf("-memory-dir (empty leaves the list case's control out): %w", err)
			}
		}
		if _, err := os.Stat(cfg.crictl); err != nil {
			return fmt.Errorf("crictl, the peer of the list case (make bench builds it; -cases leaves the case out): %w", err)
		}
		if b.list, err = b.prepareList(); err != nil {
			return fmt.Errorf("list case: %w", err)
		}
		defer b.list.reg.Stop()
	}
	for _, bin := range cfg.containerds {
		sec, err := b.runAgainst(ctx, bin)
		if err != nil {
			return fmt.Errorf("containerd %s: %w", bin, err)
		}
		rep.sections = append(rep.sections, sec)
	}
	rep.finished = time.Now()
	rep.loadEnd = loadAverage()
	if err := b.writeReport(rep, notes); err != nil {
		return err
	}
	b.logf("wrote %s", cfg.out)
	return nil
}

// runAgainst starts a private containerd from bin and runs every case.
func (b *bench) runAgainst(ctx context.Context, bin string) (*section, error) {
	e, err := startRuntime(ctx, bin, "")
	if err != nil {
		return nil, err
	}
	defer e.stop()
	b.logf("containerd %s (%s), ctr %s", e.c.Version, bin, e.ctr)
	sec, err := b.runCases(ctx, e)
	if err != nil {
		return nil, err
	}
	sec.containerdBin = bin
	sec.ctrVersion = commandOutput(e.ctr, "--version")
	return sec, nil
}

// generate writes the input archives of the cases to run into the work
// directory.
func (b *bench) generate() error {
	in := &b.in
	w := b.work
	start := time.Now()
	if b.wantAny("floor", "plain", "compressed", "pipes", "again", "again-named", "unpack", "verify") {
		if err := b.generatePlain(); err != nil {
			return err
		}
	}
	if b.want("layers") {
		in.layered = filepath.Join(w, "layers.tar")
		if err := writeDockerSave(in.layered, archiveSpec{name: "bench/layers:1", seed: 100, layers: b.cfg.layers, size: b.cfg.size}); err != nil {
			return err
		}
	}
	if b.wantAny("many", "restart", "latency") {
		if err := b.generateSmall(); err != nil {
			return err
		}
	}
	if b.cfg.big > 0 && b.want("big") {
		in.big = filepath.Join(w, "big.tar")
		if err := writeDockerSave(in.big, archiveSpec{name: "bench/big:1", seed: 9, layers: 1, size: b.cfg.big}); err != nil {
			return err
		}
	}
	if b.want("pod") {
		if err := b.generatePod(); err != nil {
			return err
		}
	}
	for _, v := range bundleVariants() {
		if b.want(v.key) {
			var err error
			if b.bundle, err = b.generateBundle(); err != nil {
				return fmt.Errorf("bundle: %w", err)
			}
			break
		}
	}
	b.logf("inputs ready in %s", time.Since(start).Round(time.Second))
	return nil
}

// generatePlain writes the large single-image archive, plain, compressed
// and with blobs named by digest.
func (b *bench) generatePlain() error {
	in := &b.in
	w := b.work
	in.plain = filepath.Join(w, "plain.tar")
	if err := writeDockerSave(in.plain, archiveSpec{name: "bench/plain:1", seed: 1, layers: 1, size: b.cfg.size}); err != nil {
		return err
	}
	in.plainAgain = filepath.Join(w, "plain-again.tar")
	if err := os.Link(in.plain, in.plainAgain); err != nil {
		return err
	}
	// The same image with its blobs named by digest, as docker save ≥ 25
	// writes it: a re-import can skip what containerd already has.
	in.blobNamed = filepath.Join(w, "plain-blobs.tar")
	if b.want("again-named") {
		if err := writeDockerSave(in.blobNamed, archiveSpec{name: "bench/plain:1", seed: 1, layers: 1, size: b.cfg.size, blobNames: true}); err != nil {
			return err
		}
	}
	in.zst = filepath.Join(w, "plain.tar.zst")
	in.gz = filepath.Join(w, "plain.tar.gz")
	if b.wantAny("floor", "compressed", "pipes", "verify") {
		if err := compressZstd(in.plain, in.zst); err != nil {
			return err
		}
	}
	if b.wantAny("floor", "compressed", "pipes") {
		return compressGzip(in.plain, in.gz)
	}
	return nil
}
