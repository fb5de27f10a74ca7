// Package importer puts container images into containerd: it streams image
// archives into the content store, names, labels, pins, retags and unpacks
// the images they hold, and pre-pulls the references named in image lists.
//
// The importer knows nothing of directories or of how files were found; it is
// handed one path at a time.
//
// # Where things are
//
// The files, in the order an archive goes through them:
//
//	importer.go         Config, New, Process (by Kind), Result, Observer
//	kind.go             Kind, KindOf: which file names are archives or lists
//	archive_import.go   ImportArchive: open, lease, progress, read, collect, store
//	decompress.go       sniffing the compression; decoding ahead of the reader
//	tarwalk.go          the walk of a tar: metadata files, symlinks, blob entries
//	ingest.go           the import of a tar stream, its index, and the blob
//	                    ingester: open, write, commit, reuse of present blobs
//	                    (held on the import's lease)
//	ingest_parallel.go  the import of an uncompressed archive file, several
//	                    blobs at once, each from its own section of the file
//	dockersave.go       the image manifests and index of a docker save
//	complete.go         all or nothing: every image checked complete before
//	                    any is written; the parsers of OCI indexes and manifests
//	limits.go           the bounds on memory (JSON documents, tar entries)
//	blobwrite.go        blobWriter: one write session of containerd's content
//	                    service, writes in flight, and the chunks they use
//	writecodec.go       blob writes encoded without copying their data
//	images.go           creating, labelling, retagging, unpacking images
//
// And an image list:
//
//	list_parse.go       ParseList: the format of a list file
//	list.go             ImportList: pulls through the CRI, with retries
//	list_auth.go        registry credentials from a docker config.json
//
// The tests run against a real containerd started by e2e/harness (see
// main_test.go) and fail if a goroutine is left behind.
package importer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"google.golang.org/grpc"
)

// Labels imagedrop sets on the images it imports.
const (
	// LabelPinned keeps kubelet's image GC away from an image (containerd ≥ 1.6.22 / 1.7.3).
	LabelPinned = "io.cri-containerd.pinned"
	// LabelPinnedValue is the only value CRI honours for LabelPinned.
	LabelPinnedValue = "pinned"
	// LabelSource names the file an image last came from.
	LabelSource = "imagedrop.io/source"
	// labelCRIManaged marks images that the CRI plugin manages, as a CRI pull does.
	labelCRIManaged = "io.cri-containerd.image"
	// labelDistributionSource is the prefix of the content labels a pull sets, which
	// node-local mirrors (Spegel) use to find the registry and repository of a blob.
	labelDistributionSource = "containerd.io/distribution.source."
)

// Config is what the importer needs to know.
type Config struct {
	// Namespace is the containerd namespace images go to; CRI uses k8s.io.
	Namespace string
	// ExtraRegistries are registries every imported image is also tagged under.
	ExtraRegistries []string
	// Pin labels images so that kubelet's image GC skips them.
	Pin bool
	// Unpack unpacks images for the node's platform into Snapshotter.
	Unpack bool
	// Snapshotter is the snapshotter CRI uses (overlayfs by default).
	Snapshotter string
	// Platform is the platform images are unpacked for; empty means the node's.
	Platform string
	// ZstdMaxWindow caps the memory a zstd frame may ask for, in bytes.
	ZstdMaxWindow uint64
	// ProgressInterval is how often a long import logs its progress.
	ProgressInterval time.Duration
	// MaxJSONSize bounds each JSON document of an archive read into memory
	// (manifest.json, index.json, manifests, indexes, configs), in bytes.
	MaxJSONSize uint64
	// MaxArchiveEntries bounds the number of entries of an archive's tar.
	MaxArchiveEntries int

	// PullConcurrency is how many references of one list are pulled at once.
	PullConcurrency int
	// PullTimeout bounds the pull of one reference, retries included.
	PullTimeout time.Duration
	// PullRetries is how often a pull that failed for a transient reason
	// (registry unreachable, 5xx, timeout) is tried again.
	PullRetries int
	// PullBackoff is the delay before the first retry of a pull; with
	// WithPullBackoff (as cmd/imagedrop does) it grows per retry.
	PullBackoff time.Duration
	// PullAuthFile is a docker config.json whose credentials are sent with
	// pulls from matching registries; empty means none.
	PullAuthFile string
}

// DefaultConfig returns the defaults of a node daemon.
func DefaultConfig() Config {
	return Config{
		Namespace:         "k8s.io",
		Pin:               true,
		Unpack:            true,
		Snapshotter:       "overlayfs",
		ZstdMaxWindow:     512 << 20,
		ProgressInterval:  10 * time.Second,
		MaxJSONSize:       defaultMaxJSONSize,
		MaxArchiveEntries: defaultMaxArchiveEntries,
		PullConcurrency:   3,
		PullTimeout:       30 * time.Minute,
		PullRetries:       4,
		PullBackoff:       time.Second,
	}
}

// Validate reports the first thing wrong with c.
func (c Config) Validate() error {
	if c.Namespace == "" {
		return errors.New("namespace must not be empty")
	}
	if err := identifiers.Validate(c.Namespace); err != nil {
		return fmt.Errorf("namespace %q: %w", c.Namespace, err)
	}
	for _, r := range c.ExtraRegistries {
		if err := validateRegistry(r); err != nil {
			return err
		}
	}
	if c.Unpack && c.Snapshotter == "" {
		return errors.New("snapshotter must not be empty when unpacking")
	}
	if c.Platform != "" {
		if _, err := platforms.Parse(c.Platform); err != nil {
			return fmt.Errorf("platform %q: %w", c.Platform, err)
		}
	}
	if c.ZstdMaxWindow < 1<<20 {
		return fmt.Errorf("zstd max window %d is below 1 MiB", c.ZstdMaxWindow)
	}
	if c.MaxJSONSize < minMaxJSONSize || c.MaxJSONSize > 1<<40 {
		return fmt.Errorf("max JSON size %d: want 4 KiB to 1 TiB", c.MaxJSONSize)
	}
	if c.MaxArchiveEntries < 1 {
		return fmt.Errorf("max archive entries %d: want at least 1", c.MaxArchiveEntries)
	}
	if c.ProgressInterval <= 0 {
		return errors.New("progress interval must be positive")
	}
	if c.PullConcurrency < 1 {
		return fmt.Errorf("pull concurrency %d: want at least 1", c.PullConcurrency)
	}
	if c.PullTimeout <= 0 {
		return errors.New("pull timeout must be positive")
	}
	if c.PullRetries < 0 {
		return fmt.Errorf("pull retries %d: want 0 or more", c.PullRetries)
	}
	if c.PullRetries > 0 && c.PullBackoff <= 0 {
		return errors.New("pull backoff must be positive")
	}
	return nil
}

// validateRegistry accepts a registry host with an optional port and path
// prefix ("registry.local:5000", "mirror.example.com/cache"), no scheme.
func validateRegistry(r string) error {
	if r == "" || strings.Contains(r, "://") {
		return fmt.Errorf("extra registry %q: want host[:port][/path], without a scheme", r)
	}
	named, err := reference.ParseNormalizedNamed(r + "/image")
	if err != nil || reference.Domain(named) != strings.SplitN(r, "/", 2)[0] {
		return fmt.Errorf("extra registry %q: want host[:port][/path], without a scheme", r)
	}
	return nil
}

// Results of a retag, as passed to Observer.Retagged.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
)

// RetagResults returns every result Observer.Retagged is told.
func RetagResults() []string { return []string{ResultSuccess, ResultFailure} }

// Observer is told what the importer did, for metrics.
type Observer interface {
	BytesRead(n int64)
	ImagesImported(n int)
	// Retagged reports a retag: ResultSuccess or ResultFailure.
	Retagged(result string)
	// ImagePulled reports one reference of a list: OutcomePulled,
	// OutcomePresent or OutcomeFailure.
	ImagePulled(result string, d time.Duration)
}

type nopObserver struct{}

func (nopObserver) BytesRead(int64)                   {}
func (nopObserver) ImagesImported(int)                {}
func (nopObserver) Retagged(string)                   {}
func (nopObserver) ImagePulled(string, time.Duration) {}

// Importer imports archives and lists into one containerd namespace.
type Importer struct {
	client   *containerd.Client
	conn     grpc.ClientConnInterface // client's connection, for the APIs used directly
	cfg      Config
	log      *slog.Logger
	obs      Observer
	backoff  func(n int) time.Duration // delay before retry n of a pull
	platform platforms.MatchComparer
}

// Option changes an Importer built by New.
type Option func(*Importer)

// WithObserver sends the importer's events to o.
func WithObserver(o Observer) Option {
	return func(im *Importer) { im.obs = o }
}

// WithPullBackoff sets the delay before retry n (n ≥ 1) of a pull that
// failed for a transient reason; cmd/imagedrop hands it the watcher's
// Backoff, the one backoff of imagedrop. Without it every retry waits
// Config.PullBackoff.
func WithPullBackoff(delay func(n int) time.Duration) Option {
	return func(im *Importer) { im.backoff = delay }
}

// New returns an Importer that talks to containerd through client.
func New(client *containerd.Client, cfg Config, log *slog.Logger, opts ...Option) (*Importer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("importer config: %w", err)
	}
	platform := platforms.Default()
	if cfg.Platform != "" {
		p, err := platforms.Parse(cfg.Platform)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", cfg.Platform, err)
		}
		platform = platforms.Only(p)
	}
	im := &Importer{client: client, cfg: cfg, log: log, obs: nopObserver{}, platform: platform}
	if client != nil { // nil only in tests of what needs no containerd
		conn, ok := client.Conn().(grpc.ClientConnInterface)
		if !ok {
			return nil, errors.New("containerd client has no gRPC connection")
		}
		im.conn = conn
	}
	for _, o := range opts {
		o(im)
	}
	return im, nil
}

// Result is what one file produced.
type Result struct {
	Path        string      `json:"-"`
	Kind        Kind        `json:"kind"`
	Compression Compression `json:"compression,omitempty"`
	// Images are every image name the file produced, retags included, sorted.
	Images []string `json:"images"`
	// BytesRead counts the bytes read from the file as stored (compressed).
	BytesRead int64 `json:"bytes_read"`
	// Unpacked counts the images unpacked for the node's platform.
	Unpacked int `json:"unpacked,omitempty"`
	// SkippedPlatforms counts manifests whose content was not in the archive.
	SkippedPlatforms int `json:"skipped_platforms,omitempty"`
	// References are the per-reference outcomes of a list.
	References []ReferenceResult `json:"references,omitempty"`
}

// Process imports the file at path according to its kind.
func (im *Importer) Process(ctx context.Context, path string) (Result, error) {
	kind, ok := KindOf(path)
	if !ok {
		return Result{Path: path}, fmt.Errorf("%s: unsupported file name (want %s)", path, suffixList())
	}
	if kind == KindList {
		return im.ImportList(ctx, path)
	}
	return im.ImportArchive(ctx, path)
}

func (im *Importer) nsContext(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, im.cfg.Namespace)
}
