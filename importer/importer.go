package importer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
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
	// UnpackConcurrency is how many images of one archive are unpacked at once.
	UnpackConcurrency int
	// Platform is the platform images are unpacked for; empty means the node's.
	Platform string
	// ZstdMaxWindow caps the memory a zstd frame may ask for, in bytes.
	ZstdMaxWindow uint64
	// MaxExpansion and MaxExpansionFloor bound the bytes one compressed
	// file may decompress to: max(MaxExpansion × its size, MaxExpansionFloor).
	MaxExpansion      uint64
	MaxExpansionFloor uint64
	// ContainerdRoot is containerd's root directory; an import stops rather
	// than take the free space of its filesystem below MinFreeSpace. Empty,
	// or a path that does not exist, turns the check off.
	ContainerdRoot string
	MinFreeSpace   MinFree
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

	// MaxListReferences caps the lines of one list that name references,
	// valid or not; a longer list fails before anything is pulled.
	MaxListReferences int
	// MaxListSize caps the size of a list file, in bytes.
	MaxListSize uint64
	// ListSample caps the per-reference results a list's Result keeps:
	// failures first, then the others (Result.Counts counts them all).
	ListSample int
	// MaxErrorLength caps the length of an error Process returns, in bytes.
	MaxErrorLength int

	// Verify is the policy archives and lists are verified by (verify.go);
	// VerifyKeys are the PEM public key files signatures are trusted from.
	Verify     Policy
	VerifyKeys []string
	// VerifyWait is how long after its mtime a file may wait for its
	// sidecar (a transient error) before it fails for good.
	VerifyWait time.Duration
	// MaxSidecarSize caps the size of a sidecar file, in bytes.
	MaxSidecarSize uint64
}

// DefaultConfig returns the defaults of a node daemon.
func DefaultConfig() Config {
	return Config{
		Namespace:         "k8s.io",
		Pin:               true,
		Unpack:            true,
		Snapshotter:       "overlayfs",
		UnpackConcurrency: 2,
		ZstdMaxWindow:     512 << 20,
		MaxExpansion:      100,
		// MaxExpansionFloor: 1GiB, so small archives of sparse or zero-filled
		// layers still import.
		MaxExpansionFloor: 1 << 30,
		ContainerdRoot:    "/var/lib/containerd",
		MinFreeSpace:      MinFree{Percent: 15},
		ProgressInterval:  10 * time.Second,
		MaxJSONSize:       defaultMaxJSONSize,
		MaxArchiveEntries: defaultMaxArchiveEntries,
		PullConcurrency:   3,
		PullTimeout:       30 * time.Minute,
		PullRetries:       4,
		PullBackoff:       time.Second,

		MaxListReferences: 1000,
		MaxListSize:       1 << 20,
		ListSample:        50,
		MaxErrorLength:    512,

		Verify:         PolicyOff,
		VerifyWait:     2 * time.Minute,
		MaxSidecarSize: 64 << 10,
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
	if c.MaxExpansion < 1 {
		return errors.New("max expansion must be at least 1")
	}
	if c.MinFreeSpace.Percent < 0 || c.MinFreeSpace.Percent >= 100 {
		return fmt.Errorf("min free space %g%%: want 0 to 100%%", c.MinFreeSpace.Percent)
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
	if err := c.validateVerify(); err != nil {
		return err
	}
	return c.validateBounds()
}

// validateBounds checks the caps on what a file may make imagedrop hold.
func (c Config) validateBounds() error {
	switch {
	case c.UnpackConcurrency < 1:
		return fmt.Errorf("unpack concurrency %d: want at least 1", c.UnpackConcurrency)
	case c.MaxListReferences < 1:
		return fmt.Errorf("max list references %d: want at least 1", c.MaxListReferences)
	case c.MaxListSize < 1:
		return errors.New("max list size must be positive")
	case c.ListSample < 1:
		return fmt.Errorf("list sample %d: want at least 1", c.ListSample)
	case c.MaxErrorLength < minErrorLength:
		return fmt.Errorf("max error length %d: want at least %d", c.MaxErrorLength, minErrorLength)
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
	// Refused reports a file refused by a bound: one of RefusalReasons.
	Refused(reason string)
	// Verified reports the verification of a file under policy (one of
	// VerifyPolicies): one of VerifyResults.
	Verified(policy, result string)
}

type nopObserver struct{}

func (nopObserver) BytesRead(int64)                   {}
func (nopObserver) ImagesImported(int)                {}
func (nopObserver) Retagged(string)                   {}
func (nopObserver) ImagePulled(string, time.Duration) {}
func (nopObserver) Refused(string)                    {}
func (nopObserver) Verified(string, string)           {}

// Importer imports archives and lists into one containerd namespace.
type Importer struct {
	client   *containerd.Client
	conn     grpc.ClientConnInterface // client's connection, for the APIs used directly
	cfg      Config
	log      *slog.Logger
	obs      Observer
	backoff  func(n int) time.Duration // delay before retry n of a pull
	platform platforms.MatchComparer
	instance string       // labels this Importer's leases (cleanup.go)
	keys     []trustedKey // Config.VerifyKeys, loaded
	left     leftovers    // what is left to release
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
	im := &Importer{client: client, cfg: cfg, log: log, obs: nopObserver{}, platform: platform, instance: newInstance()}
	keys, err := loadKeys(cfg.VerifyKeys)
	if err != nil {
		return nil, err
	}
	im.keys = keys
	if cfg.ContainerdRoot != "" {
		if _, err := os.Stat(cfg.ContainerdRoot); errors.Is(err, fs.ErrNotExist) {
			log.Warn("free_space_check_off", "containerd_root", cfg.ContainerdRoot, "err", err)
		}
	}
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
	// BytesDecompressed counts the bytes they decompressed to (for an
	// uncompressed archive, BytesRead).
	BytesDecompressed int64 `json:"bytes_decompressed,omitempty"`
	// Unpacked counts the images unpacked for the node's platform.
	Unpacked int `json:"unpacked,omitempty"`
	// SkippedPlatforms counts manifests whose content was not in the archive.
	SkippedPlatforms int `json:"skipped_platforms,omitempty"`
	// References are per-reference outcomes of a list, at most
	// Config.ListSample of them: the failures first, then the others, in
	// line order.
	References []ReferenceResult `json:"references,omitempty"`
	// ReferencesOmitted counts the references left out of References.
	ReferencesOmitted int `json:"references_omitted,omitempty"`
	// Counts counts the outcomes of every reference of a list.
	Counts *ReferenceCounts `json:"counts,omitempty"`
	// Verified says how the file was verified (Config.Verify), if it was.
	Verified *Verification `json:"verified,omitempty"`
}

// ReferenceCounts counts the outcomes of the references of a list.
type ReferenceCounts struct {
	Pulled  int `json:"pulled"`
	Present int `json:"present"`
	Failed  int `json:"failed"`
}

// Process imports the file in according to its kind. A Root that is not
// empty is the images directory the file was found in, whose content is
// untrusted: only a regular file is read, a symlink only if it resolves
// inside Root, and a hard-linked file not at all (see openInput). With Root
// empty the file is read as named, if it is a regular file. The error is at
// most Config.MaxErrorLength bytes long.
func (im *Importer) Process(ctx context.Context, in Input) (Result, error) {
	kind, ok := KindOf(in.Path)
	if !ok {
		return Result{Path: in.Path}, invalid(fmt.Errorf("%s: unsupported file name (want %s)", in.Path, suffixList()))
	}
	var res Result
	var err error
	if kind == KindList {
		res, err = im.importList(ctx, in)
	} else {
		res, err = im.importArchive(ctx, in)
	}
	if reason := refusal(err); reason != "" {
		im.obs.Refused(reason)
	}
	if result := verifyResult(res.Verified, err); result != "" {
		im.obs.Verified(string(im.cfg.Verify), result)
	}
	return res, shorten(err, im.cfg.MaxErrorLength)
}

func (im *Importer) nsContext(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, im.cfg.Namespace)
}
