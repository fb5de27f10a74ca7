package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/imagedrop/imagedrop/importer"
)

// unpinConfig is the configuration of imagedrop unpin.
type unpinConfig struct {
	common commonConfig
	all    bool
	source string
	hold   bool
	wait   unpinWait
}

func (c *unpinConfig) register(fs *flag.FlagSet) {
	c.common.importer = importer.DefaultConfig()
	// Unpin reads no file and writes no blob: no free-space check.
	c.common.importer.ContainerdRoot = ""
	c.common.logLevel, c.common.logFormat = "info", "text"
	fs.StringVar(&c.common.containerdAddress, "containerd-address", "/run/containerd/containerd.sock", "containerd socket")
	fs.StringVar(&c.common.importer.Namespace, "namespace", c.common.importer.Namespace, "containerd namespace (CRI uses k8s.io)")
	fs.BoolVar(&c.all, "all", false, "release every image imagedrop labelled, whatever file it came from")
	fs.BoolVar(&c.hold, "hold", false, "after releasing, keep running until SIGTERM (the container of the uninstall's unpin DaemonSet: the chart's hook, deploy/unpin)")
	fs.StringVar(&c.source, "source", "", "release only the images that came from `FILE` (its base name is compared with the imagedrop.io/source label)")
	fs.StringVar(&c.wait.daemonSet, "wait-daemonset", "", "unpin nothing: wait until every pod of the DaemonSet `NAME` is available (the chart's uninstall Job, for its unpin DaemonSet)")
	fs.StringVar(&c.wait.namespace, "wait-namespace", "", "`NAMESPACE` of --wait-daemonset")
	c.wait.timeout = 5 * time.Minute
	fs.DurationVar(&c.wait.timeout, "wait-timeout", c.wait.timeout, "how long --wait-daemonset waits")
	fs.StringVar(&c.wait.kube.kubeconfig, "kubeconfig", "", "kubeconfig `FILE` of --wait-daemonset (default: the pod's in-cluster config)")
}

func (c *unpinConfig) validate() error {
	if c.wait.daemonSet != "" {
		switch {
		case c.all || c.source != "":
			return errors.New("unpin: --wait-daemonset unpins nothing: give it without --all or --source")
		case c.wait.namespace == "":
			return errors.New("unpin: --wait-daemonset needs --wait-namespace")
		case c.wait.timeout <= 0:
			return fmt.Errorf("--wait-timeout must be positive, not %s", c.wait.timeout)
		}
		return c.wait.kube.validate()
	}
	switch {
	case c.all && c.source != "":
		return errors.New("unpin: give --all or --source FILE, not both")
	case !c.all && c.source == "":
		return errors.New("unpin: give --all or --source FILE")
	}
	return c.common.validate()
}

const unpinExamples = `  imagedrop unpin --all                   # before uninstalling imagedrop
  imagedrop unpin --source 50-apps.tar    # the images of one file
`

// newUnpinFlags returns unpin's flag set, bound to cfg.
func newUnpinFlags(cfg *unpinConfig, stderr io.Writer) *flag.FlagSet {
	fs := newFlagSet("unpin", "unpin [flags] --all | --source FILE", unpinExamples, stderr)
	cfg.register(fs)
	return fs
}

func parseUnpin(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (unpinConfig, error) {
	var cfg unpinConfig
	fs := newUnpinFlags(&cfg, stderr)
	if err := parseFlags(fs, args, lookupEnv); err != nil {
		return unpinConfig{}, err
	}
	if fs.NArg() > 0 {
		return unpinConfig{}, usageError{fmt.Errorf("unpin: unexpected argument %q (use --source FILE)", fs.Arg(0))}
	}
	if err := cfg.validate(); err != nil {
		return unpinConfig{}, usageError{err}
	}
	return cfg, nil
}

// runUnpin removes imagedrop's pin and source labels from the images it
// labelled, all of them or those of one file, so that kubelet's image GC may
// collect them once unused: what an uninstall runs on every node. The images
// themselves stay.
func runUnpin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseUnpin(args, os.LookupEnv, helpOutput(args, stdout, stderr))
	if err != nil {
		return err
	}
	if cfg.wait.daemonSet != "" {
		return cfg.wait.run(ctx, stdout)
	}
	log := cfg.common.logger(stderr)
	client, err := cfg.common.connect(ctx)
	if err != nil {
		return err
	}
	defer client.Close()
	im, err := importer.New(client, cfg.common.importer, log.With("component", "importer"))
	if err != nil {
		return err
	}
	source := ""
	if cfg.source != "" {
		source = filepath.Base(cfg.source)
	}
	names, err := im.Owned(ctx, source)
	if err != nil {
		return err
	}
	n, err := im.Release(ctx, names)
	for _, name := range names {
		fmt.Fprintf(stdout, "released %s\n", name)
	}
	fmt.Fprintf(stdout, "%d of %d images released (namespace %s)\n", n, len(names), cfg.common.importer.Namespace)
	if err != nil || !cfg.hold {
		return err
	}
	<-ctx.Done()
	return nil
}
