// Command imagedrop makes container images appear on a node: it imports
// image archives and pre-pulls image lists into containerd, once
// (`imagedrop import FILE...`) or continuously from a watched directory
// (`imagedrop watch`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/imagedrop/imagedrop/importer"
	"github.com/imagedrop/imagedrop/watcher"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode maps run's error to the process exit status: 0 on success, 2 for
// bad usage, 1 for anything else.
func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "imagedrop: %v\n", err)
		return 2
	case errors.Is(err, errFilesFailed):
		return 1
	}
	fmt.Fprintf(stderr, "imagedrop: %v\n", err)
	return 1
}

const usage = `imagedrop makes container images appear on a node.

Usage:
  imagedrop import [flags] FILE...   import archives and pre-pull lists once
  imagedrop watch [flags]            preload, then watch the images directory
  imagedrop unpin --all | --source FILE
                                     remove imagedrop's pin and source labels (before an uninstall)
  imagedrop version                  print the version

Every flag has an environment twin: --containerd-address is IMAGEDROP_CONTAINERD_ADDRESS.
Run "imagedrop COMMAND -h" for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("no command given")}
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "import":
		return runImport(ctx, rest, stdout, stderr)
	case "watch":
		return runWatch(ctx, rest, stdout, stderr)
	case "unpin":
		return runUnpin(ctx, rest, stdout, stderr)
	case "version":
		return runVersion(rest, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

// commonConfig is what every command that talks to containerd needs.
type commonConfig struct {
	containerdAddress string
	importer          importer.Config
	logLevel          string
	logFormat         string
}

func (c *commonConfig) register(fs *flag.FlagSet) {
	c.importer = importer.DefaultConfig()
	fs.StringVar(&c.containerdAddress, "containerd-address", "/run/containerd/containerd.sock", "containerd `SOCKET`")
	fs.StringVar(&c.importer.Namespace, "namespace", c.importer.Namespace, "containerd `NAMESPACE` (CRI uses k8s.io)")
	fs.Var(newListFlag(&c.importer.ExtraRegistries), "extra-registry", "also tag every image under `REGISTRY` (repeatable; env: comma-separated)")
	fs.BoolVar(&c.importer.Pin, "pin", c.importer.Pin, "pin images against kubelet image GC")
	fs.BoolVar(&c.importer.Unpack, "unpack", c.importer.Unpack, "unpack imported images for the node's platform")
	fs.StringVar(&c.importer.Snapshotter, "snapshotter", c.importer.Snapshotter, "`SNAPSHOTTER` to unpack into")
	fs.IntVar(&c.importer.UnpackConcurrency, "unpack-concurrency", c.importer.UnpackConcurrency, "images of one archive unpacked at once (a layer chain two images share is extracted once)")
	fs.StringVar(&c.importer.Platform, "platform", "", "`OS/ARCH` to unpack (default: the node's)")
	fs.Var(sizeFlag{&c.importer.ZstdMaxWindow}, "zstd-max-window", "largest zstd window accepted (memory cap), a `SIZE` such as 128Mi or 512MiB")
	fs.Uint64Var(&c.importer.MaxExpansion, "max-expansion", c.importer.MaxExpansion, "a compressed file may decompress to this many times its size (or --max-expansion-floor, if more)")
	fs.Var(sizeFlag{&c.importer.MaxExpansionFloor}, "max-expansion-floor", "a compressed file may always decompress to this `SIZE`, e.g. 1GiB")
	fs.StringVar(&c.importer.ContainerdRoot, "containerd-root", c.importer.ContainerdRoot, "containerd's root `DIR`, whose filesystem's free space imports keep above --min-free-space (a path that does not exist turns the check off)")
	fs.Var(minFreeFlag{&c.importer.MinFreeSpace}, "min-free-space", "`SPACE` imports leave free on --containerd-root's filesystem: a percentage (15%) or a size (20Gi)")
	fs.Var(sizeFlag{&c.importer.MaxJSONSize}, "max-json-size", "largest JSON document of an archive read into memory, a `SIZE` (manifest.json, index.json, manifests, configs)")
	fs.IntVar(&c.importer.MaxArchiveEntries, "max-archive-entries", c.importer.MaxArchiveEntries, "most entries one archive's tar may hold")
	fs.IntVar(&c.importer.PullConcurrency, "pull-concurrency", c.importer.PullConcurrency, "references of one image list pulled at once")
	fs.DurationVar(&c.importer.PullTimeout, "pull-timeout", c.importer.PullTimeout, "time allowed to pull one listed reference, retries included")
	fs.StringVar(&c.importer.PullAuthFile, "pull-auth", "", "docker config.json `FILE` whose auths are sent with pulls of image lists (default: none; containerd's own registry config applies)")
	fs.IntVar(&c.importer.MaxListReferences, "max-list-references", c.importer.MaxListReferences, "most references one image list may name; a longer list fails before any pull")
	fs.Var(sizeFlag{&c.importer.MaxListSize}, "max-list-size", "largest image list file read, a `SIZE` such as 1Mi")
	fs.IntVar(&c.importer.ListSample, "list-sample", c.importer.ListSample, "per-reference results of a list kept for /status (failures first); counts are always kept")
	fs.IntVar(&c.importer.MaxErrorLength, "max-error-length", c.importer.MaxErrorLength, "longest error message kept for a file, in bytes")
	fs.StringVar((*string)(&c.importer.Verify), "verify", string(c.importer.Verify), "verification of archives and lists: off, checksum (FILE.sha256) or signature (FILE.sigstore.json or FILE.sig by a --verify-key)")
	fs.Var(newListFlag(&c.importer.VerifyKeys), "verify-key", "PEM public key `FILE` (ECDSA P-256 or Ed25519) whose signatures are trusted (repeatable; env: comma-separated)")
	fs.DurationVar(&c.importer.VerifyWait, "verify-wait", c.importer.VerifyWait, "how long after its mtime a file waits for its sidecar before it fails")
	fs.Var(sizeFlag{&c.importer.MaxSidecarSize}, "verify-max-sidecar-size", "largest sidecar file read, a `SIZE` (.sha256, .sig, .sigstore.json)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log `LEVEL`: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log `FORMAT`: text or json")
}

// pullBackoff hands the importer imagedrop's one backoff for pull retries:
// from Config.PullBackoff, doubling up to a minute.
func (c *commonConfig) pullBackoff() importer.Option {
	return importer.WithPullBackoff(watcher.Backoff{Min: c.importer.PullBackoff, Max: time.Minute}.Delay)
}

// matchFile is the watcher's Matcher: the importer's table of file kinds.
func matchFile(path string) (string, bool) {
	kind, ok := importer.KindOf(path)
	return string(kind), ok
}

func (c *commonConfig) validate() error {
	if c.containerdAddress == "" {
		return errors.New("--containerd-address must not be empty")
	}
	if err := c.importer.Validate(); err != nil {
		return err
	}
	if c.importer.PullAuthFile != "" {
		if _, err := os.Stat(c.importer.PullAuthFile); err != nil {
			return fmt.Errorf("--pull-auth: %w", err)
		}
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", c.logFormat)
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	return nil
}

func (c *commonConfig) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.logLevel)) // checked by validate
	opts := &slog.HandlerOptions{Level: level}
	log := slog.New(slog.NewTextHandler(w, opts))
	if c.logFormat == "json" {
		log = slog.New(slog.NewJSONHandler(w, opts))
	}
	routeClientLogs(log, level)
	return log
}

// connect dials containerd and checks that it answers.
func (c *commonConfig) connect(ctx context.Context) (*containerd.Client, error) {
	if err := socketAccess(c.containerdAddress); err != nil {
		return nil, err
	}
	client, err := containerd.New(c.containerdAddress,
		containerd.WithDefaultNamespace(c.importer.Namespace),
		containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", c.containerdAddress, err)
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := client.Version(vctx); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("containerd at %s does not answer: %w", c.containerdAddress, err)
	}
	return client, nil
}

// cleanup releases what an earlier imagedrop left in containerd (cleanup.go
// of the importer); a failure is logged, and retried before each import.
func cleanup(ctx context.Context, im *importer.Importer, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := im.Cleanup(ctx); err != nil {
		log.Warn("cleanup_failed", "err", err)
	}
}

// newFlagSet returns a flag set whose usage names the command.
func newFlagSet(name, synopsis, examples string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {
		fmt.Fprintf(w, "Usage: imagedrop %s\n\nExamples:\n%s\nFlags (each also as IMAGEDROP_<NAME>; flags go before any FILE):\n", synopsis, examples)
		fs.PrintDefaults()
	}
	return fs
}

// helpOutput is where a command prints its usage: stdout when help was
// asked for (-h, --help), so that it can be paged or grepped, else stderr.
func helpOutput(args []string, stdout, stderr io.Writer) io.Writer {
	for _, a := range args {
		switch a {
		case "--":
			return stderr
		case "-h", "-help", "--help", "--h":
			return stdout
		}
	}
	return stderr
}

func joinOr(s []string, empty string) string {
	if len(s) == 0 {
		return empty
	}
	return strings.Join(s, ", ")
}
