package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	containerd "github.com/containerd/containerd/v2/client"
	"golang.org/x/sync/errgroup"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/imagedrop/imagedrop/importer"
	"github.com/imagedrop/imagedrop/metrics"
	"github.com/imagedrop/imagedrop/watcher"
)

const defaultImagesDir = "/var/lib/imagedrop/images"

type watchConfig struct {
	common  commonConfig
	watcher watcher.Config
	server  metrics.ServerConfig
	shared  sharedConfig
	node    nodeConfig
}

func (c *watchConfig) register(fs *flag.FlagSet) {
	c.common.register(fs)
	c.watcher = watcher.DefaultConfig()
	c.watcher.Dirs = []string{defaultImagesDir}
	c.watcher.Match = matchFile
	c.watcher.Companion = importer.SidecarOf
	c.server = metrics.DefaultServerConfig()
	fs.Var(newListFlag(&c.watcher.Dirs), "images-dir", "`DIR` of image archives and lists, watched with subdirectories (repeatable)")
	fs.Var(newListFlag(&c.watcher.RescanDirs), "rescan-dir", "`DIR` found by rescans every --rescan-interval instead of inotify, for network filesystems (repeatable)")
	fs.DurationVar(&c.watcher.Rescan, "rescan-interval", c.watcher.Rescan, "how often --rescan-dir directories, and directories whose inotify watch failed, are rescanned")
	fs.StringVar(&c.watcher.StateFile, "state-file", "/var/lib/imagedrop/state.json", "`FILE` where imagedrop remembers what it did for which file")
	fs.IntVar(&c.watcher.Workers, "workers", c.watcher.Workers, "files processed at once")
	fs.DurationVar(&c.watcher.Settle, "settle", c.watcher.Settle, "how long a file written in place must stay unchanged before it is read")
	fs.DurationVar(&c.watcher.RetryMin, "retry-min", c.watcher.RetryMin, "first delay before a failed file is retried (doubles per failure)")
	fs.DurationVar(&c.watcher.RetryMax, "retry-max", c.watcher.RetryMax, "longest delay between retries of a failed file")
	fs.DurationVar(&c.watcher.StallAfter, "stall-timeout", c.watcher.StallAfter, "how long a running job may make no progress before /healthz fails and /status marks it stalled (0: never)")
	fs.DurationVar(&c.watcher.Grace, "shutdown-grace", c.watcher.Grace, "how long running jobs may finish after SIGTERM before they are cancelled")
	fs.StringVar(&c.server.Address, "listen-address", c.server.Address, "`HOST:PORT` of the /metrics, /healthz, /readyz and /status server")
	c.shared.register(fs)
	c.node.register(fs)
}

func (c *watchConfig) validate() error {
	if err := c.common.validate(); err != nil {
		return err
	}
	if err := c.watcher.Validate(); err != nil {
		return err
	}
	if err := c.shared.validate(); err != nil {
		return err
	}
	if err := c.node.validate(); err != nil {
		return err
	}
	return c.server.Validate()
}

const watchExamples = `  imagedrop watch --images-dir /var/lib/imagedrop/images
  imagedrop watch --rescan-dir /mnt/nfs/images --shared-import-slots 3   # a shared volume
  IMAGEDROP_WORKERS=4 imagedrop watch --listen-address 10.0.0.7:9365
`

// newWatchFlags returns watch's flag set, bound to cfg.
func newWatchFlags(cfg *watchConfig, stderr io.Writer) *flag.FlagSet {
	fs := newFlagSet("watch", "watch [flags]", watchExamples, stderr)
	cfg.register(fs)
	return fs
}

// parseWatch reads watch's configuration from the environment, then args,
// and validates it.
func parseWatch(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (watchConfig, error) {
	var cfg watchConfig
	fs := newWatchFlags(&cfg, stderr)
	if err := parseFlags(fs, args, lookupEnv); err != nil {
		return watchConfig{}, err
	}
	if fs.NArg() > 0 {
		return watchConfig{}, usageError{fmt.Errorf("watch takes no arguments, got %q", fs.Args())}
	}
	if err := cfg.validate(); err != nil {
		return watchConfig{}, usageError{err}
	}
	return cfg, nil
}

// runWatch is the node daemon: preload the images directories, then watch
// them, serving metrics and status, until SIGTERM.
func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseWatch(args, os.LookupEnv, helpOutput(args, stdout, stderr))
	if err != nil {
		return err
	}
	log := cfg.common.logger(stderr)
	log.Info("starting", "version", buildVersion(), "images_dirs", cfg.watcher.Dirs,
		"containerd", cfg.common.containerdAddress, "namespace", cfg.common.importer.Namespace)

	reg := metrics.NewRegistry()
	m := metrics.New(reg, buildVersion())

	// containerd may start after imagedrop: the client connects lazily, jobs
	// fail and are retried until it answers, and /readyz says why.
	client, err := containerd.New(cfg.common.containerdAddress, containerd.WithDefaultNamespace(cfg.common.importer.Namespace))
	if err != nil {
		return fmt.Errorf("containerd client for %s: %w", cfg.common.containerdAddress, err)
	}
	defer client.Close()
	logSocketAccess(log, cfg.common.containerdAddress)

	im, err := importer.New(client, cfg.common.importer, log.With("component", "importer"),
		importer.WithObserver(m), cfg.common.pullBackoff())
	if err != nil {
		return err
	}
	gate, err := newSharedGate(newSharedSlots(cfg.shared, cfg.node.kube, log.With("component", "shared-slots")), cfg.watcher.RescanDirs)
	if err != nil {
		return err
	}
	// With --node-name, the node reporter also hears of unpins.
	var obs watcher.Observer = m
	var node *nodeReporter
	if cfg.node.enabled() {
		rc, err := cfg.node.kube.restConfig()
		if err != nil {
			return err
		}
		kube, err := typedcorev1.NewForConfig(rc)
		if err != nil {
			return fmt.Errorf("kubernetes client: %w", err)
		}
		node = newNodeReporter(cfg.node, kube, metrics.NewNode(reg), log.With("component", "node"))
		obs = nodeObserver{m, node}
	}
	w, err := watcher.New(cfg.watcher, log.With("component", "watcher"), processor{im, gate}, im, obs)
	if err != nil {
		return err
	}
	srv := metrics.NewServer(cfg.server, log.With("component", "http"), reg, probes{w: w, client: client, address: cfg.common.containerdAddress, shared: gate})

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { cleanup(ctx, im, log); return nil })
	g.Go(func() error { return w.Run(ctx) })
	g.Go(func() error { return srv.Run(ctx) })
	if node != nil {
		g.Go(func() error { return node.Run(ctx, w.Status) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

var (
	_ watcher.Observer  = (*metrics.Metrics)(nil)
	_ importer.Observer = (*metrics.Metrics)(nil)
	_ watcher.Images    = (*importer.Importer)(nil)
	_ watcher.Processor = processor{}
	_ metrics.Probes    = probes{}
	_ watcher.Observer  = nodeObserver{}
)

// nodeObserver is the watcher's Observer with the node reporter: metrics,
// plus an Event on the Node when images are unpinned.
type nodeObserver struct {
	*metrics.Metrics
	node *nodeReporter
}

func (o nodeObserver) Unpinned(n int) {
	o.Metrics.Unpinned(n)
	o.node.Unpinned(n)
}

// processor hands the watcher's files to the importer; those of shared
// directories hold a cluster-wide slot while they import.
type processor struct {
	im     *importer.Importer
	shared *sharedGate
}

func (p processor) Process(ctx context.Context, f watcher.File) (watcher.Outcome, error) {
	var res importer.Result
	err := p.shared.run(ctx, f, func(ctx context.Context) error {
		var err error
		res, err = p.im.Process(ctx, importer.Input{Root: f.Root, Path: f.Path, Progress: f.Progress})
		return err
	})
	return watcher.Outcome{Images: res.Images, Bytes: res.BytesRead, Detail: res}, err
}

// probes answers /healthz, /readyz and /status from the watcher and containerd.
type probes struct {
	w       *watcher.Watcher
	client  *containerd.Client
	address string // containerd's socket
	shared  *sharedGate
}

func (p probes) Healthy() error { return p.w.Healthy() }

func (p probes) Ready(ctx context.Context) (string, error) {
	if !p.w.Ready() {
		return "", errors.New("startup preload not finished")
	}
	if _, err := p.client.Version(ctx); err != nil {
		if denied := socketAccess(p.address); denied != nil {
			return "", denied
		}
		return "", fmt.Errorf("containerd does not answer: %w", err)
	}
	return p.w.Degraded(), nil
}

// status is /status: the watcher's, and the shared-import limit's when it
// is on.
type status struct {
	watcher.Status
	SharedImports *sharedStatus `json:"shared_imports,omitempty"`
}

func (p probes) Status() any {
	ws := p.w.Status()
	return status{Status: ws, SharedImports: p.shared.status(ws)}
}
