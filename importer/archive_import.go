package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImportArchive streams the archive at path into containerd and creates,
// labels, retags and unpacks the images it names. The file is only read.
//
// All content is written under a lease that is released when the import
// ends, so a failed import leaves nothing behind for the garbage collector
// to keep; images are created only once the whole archive has been read.
func (im *Importer) ImportArchive(ctx context.Context, path string) (res Result, err error) {
	return im.importArchive(ctx, Input{Path: path})
}

// importArchive is ImportArchive of a file found in in.Root (see
// openInput), reporting its progress.
func (im *Importer) importArchive(ctx context.Context, src Input) (res Result, err error) {
	root, path := src.Root, src.Path
	res = Result{Path: path, Kind: KindArchive}
	defer func() {
		if err != nil {
			err = fmt.Errorf("import %s: %w", path, err)
		}
	}()

	f, st, err := openInput(root, path)
	if err != nil {
		return res, err
	}
	defer f.Close()
	if st.Size() == 0 {
		return res, invalid(ErrEmpty)
	}
	check, err := im.prepareCheck(root, path, st)
	if err != nil {
		return res, err
	}
	defer check.close()

	im.cleanupFirst(ctx)
	ctx, stopGuard, spaceCause, err := im.guardSpace(ctx)
	if err != nil {
		return res, err
	}
	defer stopGuard()
	defer func() { err = spaceCause(err) }()

	ctx, hold, release, err := im.lease(ctx)
	if err != nil {
		return res, err
	}
	defer func() { release(err != nil) }()

	read := &byteCounter{obs: im.obs, progress: src.Progress, read: src.Read}
	stop := im.logProgress(path, st.Size(), read)
	defer stop()
	defer func() { res.BytesRead, res.BytesDecompressed = read.n.Load(), read.out.Load() }()

	ing := ingester{cs: im.client.ContentStore(), writes: contentapi.NewContentClient(im.conn), hold: hold,
		maxJSON: int64(im.cfg.MaxJSONSize), maxEntries: im.cfg.MaxArchiveEntries,
		expansion: ExpansionLimit{Ratio: im.cfg.MaxExpansion, Floor: im.cfg.MaxExpansionFloor}}
	index, compression, err := im.readArchive(ctx, ing, f, st, read, check)
	res.Compression = compression
	if err != nil {
		return res, describeReadError(err, compression, im.cfg.ZstdMaxWindow)
	}
	if check != nil { // before any image is made
		v, err := check.verify(filepath.Base(path))
		res.Verified = &v
		if err != nil {
			return res, err
		}
	}

	found, skipped, err := im.collectImages(ctx, index)
	if err != nil {
		return res, err
	}
	res.SkippedPlatforms = skipped
	if len(found) == 0 {
		return res, invalid(errors.New("archive names no images (no RepoTags in manifest.json and no image name annotations in index.json)"))
	}

	names, unpacked, err := im.store(ctx, found, filepath.Base(path), fromArchive)
	res.Images, res.Unpacked = names, unpacked
	if err != nil {
		return res, err
	}
	im.obs.ImagesImported(len(found))
	return res, nil
}

// readArchive writes the blobs of the archive f to the content store and
// returns the entries of the index of the images it holds, and its
// compression. An uncompressed archive in a regular file has its blobs
// written several at a time (importIndexAt); anything else is read as one
// stream, decompressed. With a check every byte of the file, as read, is
// written to it: the file is then read as one stream, whole, even when
// uncompressed (the sections of importIndexAt are read out of order and
// the headers sought over, so hashing them would need a second read).
func (im *Importer) readArchive(ctx context.Context, in ingester, f *os.File, st os.FileInfo, read *byteCounter, check *fileCheck) ([]ocispec.Descriptor, Compression, error) {
	head := make([]byte, sniffSize)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, "", fmt.Errorf("read header: %w", withoutPath(err))
	}
	if c, err := detect(head[:n]); err == nil && c == CompressionNone && st.Mode().IsRegular() && check == nil {
		count := func(r *io.SectionReader) io.Reader { return countingSection{r, read} }
		index, err := in.importIndexAt(ctx, f, st.Size(), count)
		if !errors.Is(err, errSparse) {
			// The headers and padding were sought over rather than read, but
			// the whole file was gone through: count it all.
			read.add(st.Size() - read.n.Load())
			read.out.Store(read.n.Load())
			return index, c, err
		}
	}

	raw := &countingReader{r: f, c: read}
	if check != nil {
		raw.r = io.TeeReader(f, check)
	}
	tr, c, closeDecoder, err := decompress(raw, DecompressOptions{
		ZstdMaxWindow: im.cfg.ZstdMaxWindow,
		Limit:         ExpansionLimit{Ratio: im.cfg.MaxExpansion, Floor: im.cfg.MaxExpansionFloor, CompressedSize: st.Size()},
		Written:       &read.out,
	})
	if err != nil {
		return nil, c, readFailure(err)
	}
	defer closeDecoder()
	index, err := in.importIndex(ctx, tr)
	if err != nil {
		return nil, c, err
	}
	// The tar ends before the compressed stream does: read the rest so that a
	// damaged trailer (gzip checksum, zstd frame end) is still an error.
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return nil, c, readFailure(err)
	}
	if check != nil { // what follows the compressed stream is signed too
		if _, err := io.Copy(io.Discard, raw); err != nil {
			return nil, c, readFailure(err)
		}
	}
	return index, c, nil
}

// describeReadError turns a failure to read the archive into a message that
// says what is wrong with the file.
func describeReadError(err error, c Compression, zstdWindow uint64) error {
	switch {
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return invalid(fmt.Errorf("zstd window larger than the %d MiB allowed (raise --zstd-max-window): %w", zstdWindow>>20, err))
	case IsPermanent(err) && !errors.Is(err, io.ErrUnexpectedEOF):
		return err // says what is wrong already
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid(fmt.Errorf("%s is truncated: %w", archiveName(c), err))
	}
	return fmt.Errorf("read %s: %w", archiveName(c), err)
}

// archiveName names an archive by its compression, for errors: "gzip
// archive", "uncompressed archive", or "archive" before it is known.
func archiveName(c Compression) string {
	switch c {
	case "":
		return "archive"
	case CompressionNone:
		return "uncompressed archive"
	}
	return string(c) + " archive"
}

// collectImages returns the named images of the entries of an archive's
// index, every platform included, once each is known to be complete (see
// completeness), and labels the content they reference for the garbage
// collector. Manifests of an index that are not in the archive (platforms
// left out of an export) are skipped and counted.
func (im *Importer) collectImages(ctx context.Context, index []ocispec.Descriptor) ([]images.Image, int, error) {
	var (
		found   []images.Image
		unnamed int
	)
	for _, m := range index {
		if _, ok := m.Annotations[images.AnnotationManifestSubject]; ok {
			continue // a referrer (signature, SBOM), not an image
		}
		name, ok := imageName(m.Annotations)
		if !ok {
			unnamed++
			continue
		}
		found = append(found, images.Image{Name: name, Target: m})
	}
	if unnamed > 0 {
		im.log.Warn("unnamed_manifests_skipped", "count", unnamed)
	}
	found = dedupeImages(found)
	c := newCompleteness(im.client.ContentStore(), int64(im.cfg.MaxJSONSize))
	for _, img := range found {
		if err := c.check(ctx, img); err != nil {
			return nil, 0, err
		}
	}
	if err := c.apply(ctx); err != nil {
		return nil, 0, err
	}
	return found, c.skipped, nil
}

// imageName is the normalised name of an image in an archive index: the
// containerd name annotation (docker save, BuildKit), else an OCI ref.name
// that is a full reference (skopeo writes "busybox:1.36"). A bare tag such
// as "latest" names no repository and gives no name.
func imageName(annotations map[string]string) (string, bool) {
	if n, err := normalizeReference(annotations[images.AnnotationImageName]); err == nil {
		return n, true
	}
	ref := annotations[ocispec.AnnotationRefName]
	if !strings.ContainsAny(ref, ":/@") {
		return "", false // a tag alone ("latest", "v1")
	}
	if n, err := normalizeReference(ref); err == nil {
		return n, true
	}
	return "", false
}

// hasLabels reports whether have holds every label of want, equal.
func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// dedupeImages keeps the last image of each name, in first-seen order.
func dedupeImages(in []images.Image) []images.Image {
	last := make(map[string]int, len(in))
	for i, img := range in {
		last[img.Name] = i
	}
	out := in[:0:0]
	for i, img := range in {
		if last[img.Name] == i {
			out = append(out, img)
		}
	}
	return out
}

// lease returns ctx with a new lease that holds everything the import
// writes until it ends, a func that adds a blob to it explicitly, and the
// func that releases it. After a failure the release aborts the lease's
// ingests, removes its unpack snapshots and waits for garbage collection,
// so nothing of the file is left; a lease that cannot be released then is
// kept for the next Cleanup.
func (im *Importer) lease(ctx context.Context) (context.Context, func(context.Context, digest.Digest) error, func(failed bool), error) {
	ctx = im.nsContext(ctx)
	ls := im.client.LeasesService()
	// Created whatever becomes of ctx meanwhile: a Create cancelled in
	// flight (the watcher cancels a job whose file changed) can still make
	// the lease in containerd, and nothing would release it. Once it is
	// made, release runs however the import ends.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseCreateTimeout)
	l, err := ls.Create(cctx, leases.WithRandomID(), leases.WithExpiration(leaseExpiry), leases.WithLabels(im.leaseLabels()))
	cancel()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create lease: %w", err)
	}
	hold := func(ctx context.Context, d digest.Digest) error {
		if err := ls.AddResource(ctx, l, leases.Resource{ID: d.String(), Type: "content"}); err != nil {
			return fmt.Errorf("lease blob %s: %w", d, err)
		}
		return nil
	}
	release := func(failed bool) {
		ctx := context.WithoutCancel(ctx)
		var err error
		if failed {
			err = im.releaseFailed(ctx, l)
		} else {
			err = ls.Delete(ctx, l)
		}
		if err != nil {
			// containerd is away, most likely: the next import, or the
			// next imagedrop, releases it.
			im.keepForRelease(l)
			im.log.Warn("lease_release_failed", "lease", l.ID, "err", err)
		}
	}
	return leases.WithLease(ctx, l.ID), hold, release, nil
}

// byteCounter counts the bytes read from an archive file, and reports them
// as they go, and the bytes they decompressed to.
type byteCounter struct {
	n        atomic.Int64
	out      atomic.Int64
	obs      Observer
	progress func()            // Input.Progress, or nil
	read     func(total int64) // Input.Read, or nil
}

func (c *byteCounter) add(n int64) {
	if n > 0 {
		total := c.n.Add(n)
		c.obs.BytesRead(n)
		if c.read != nil {
			c.read(total)
		}
		if c.progress != nil {
			c.progress()
		}
	}
}

// countingReader counts what is read through it.
type countingReader struct {
	r io.Reader
	c *byteCounter
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.c.add(int64(n))
	return n, withoutPath(err)
}

// countingSection counts what is read from a section of the file; what is
// sought over is not counted.
type countingSection struct {
	*io.SectionReader
	c *byteCounter
}

func (r countingSection) Read(p []byte) (int, error) {
	n, err := r.SectionReader.Read(p)
	r.c.add(int64(n))
	return n, withoutPath(err)
}

// logProgress logs how far a long import has got every ProgressInterval,
// until the returned func is called.
func (im *Importer) logProgress(path string, size int64, read *byteCounter) func() {
	stop := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(im.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				n, out := read.n.Load(), read.out.Load()
				elapsed := time.Since(start).Seconds()
				im.log.Info("import_progress", "path", path, "bytes_read", n, "size", size,
					"percent", int(100*n/max(size, 1)), "rate_mib_per_second", float64(n)/(1<<20)/elapsed,
					"bytes_decompressed", out, "decompressed_mib_per_second", float64(out)/(1<<20)/elapsed)
			}
		}
	}()
	return func() {
		close(stop)
		<-finished
	}
}
