// Command imagebuild builds the imagedrop container image without a Docker
// engine or a registry: it cross-compiles static imagedrop binaries for each
// platform and writes one multi-platform OCI image archive (an OCI layout as
// a tar: index.json naming one image index of a manifest per platform) that
// `imagedrop import`, `ctr images import`, `docker load` and skopeo's
// oci-archive transport read. `make image` runs it:
//
//	go run ./deploy/imagebuild -out bin/imagedrop-image.tar -version v1.2.3 -revision $(git rev-parse HEAD)
//
// The image is what deploy/Dockerfile builds, on an empty (scratch) base:
// the binary at /usr/local/bin/imagedrop as entrypoint, `watch` as command,
// user 0:0, port 9365, and the OCI labels; deploy/imagebuild's test checks
// the two agree.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "imagebuild: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{}
	var platforms string
	fs.StringVar(&cfg.out, "out", "bin/imagedrop-image.tar", "archive to write")
	fs.StringVar(&cfg.repository, "repository", "ghcr.io/imagedrop/imagedrop", "repository of the image's name")
	fs.StringVar(&cfg.tag, "tag", "", "tag of the image's name (default: the version)")
	fs.StringVar(&cfg.version, "version", "dev", "version: the binary's main.version and the image's label")
	fs.StringVar(&cfg.revision, "revision", "", "VCS revision: the binary's main.commit and the image's label")
	fs.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated OS/ARCH list")
	fs.StringVar(&cfg.moduleDir, "module", ".", "root of the imagedrop module")
	epoch := fs.Int64("source-date-epoch", envEpoch(), "time of files and config, in Unix seconds (env: SOURCE_DATE_EPOCH)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.platforms = strings.Split(platforms, ",")
	cfg.created = time.Unix(*epoch, 0).UTC()
	if cfg.tag == "" {
		cfg.tag = cfg.version
	}
	start := time.Now()
	if err := build(ctx, cfg); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "imagebuild: wrote %s (%s for %s) in %s\n", cfg.out, cfg.ref(), platforms, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// envEpoch is SOURCE_DATE_EPOCH, the reproducible-builds convention, or 0.
func envEpoch() int64 {
	n, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	if err != nil {
		return 0
	}
	return n
}
