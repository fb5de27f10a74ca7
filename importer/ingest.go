package importer

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// The import of an archive's blobs and index (importIndex below, and
// importIndexAt in ingest_parallel.go; the tar walk in tarwalk.go, the
// manifests of a docker save in dockersave.go) follows containerd's
// archive.ImportIndex (core/images/archive/importer.go, Apache-2.0, The
// containerd Authors): the same formats, and the same images, manifests and
// digests as a result. It differs where that matters for speed:
//
//   - The index of the images is kept in memory, not written: an OCI
//     layout's index.json as read, a docker save's as built here. No image
//     references it, so it was a blob to write, read back and collect.
//   - Manifests are committed with their garbage collection labels.
//   - A blob is hashed once, by containerd as it writes it; the digest is
//     taken from containerd's answers instead of hashing the stream a second
//     time here.
//   - Blobs are sent in chunks of blobChunk bytes, so a layer costs fewer
//     round trips to containerd, and the next chunk is read and sent while
//     containerd stores the one before (blobWriter) rather than after.
//   - A blob known by digest that another namespace holds (containerd
//     shares content between namespaces) is committed without being sent.
//   - A blob an OCI layout (or a docker save ≥ 25) names by digest is not
//     written again when containerd already has it: the writer is opened
//     with the expected digest, containerd answers "already exists", the
//     blob is added to the import's lease and the entry is skipped.

// errNoManifest is a tar that is neither a docker save nor an OCI layout.
var errNoManifest = invalid(errors.New("not an image archive: no manifest.json (docker save) or index.json (OCI layout) found"))

// ingester writes the blobs of one import to the content store, under the
// import's lease. hold adds a blob to that lease: every blob the import uses
// that it did not commit itself (found already present) is held, so that the
// content of a just-deleted image cannot be collected under its feet.
type ingester struct {
	cs     content.Store
	writes contentWrites // the content service of cs, for blobWriter
	hold   func(context.Context, digest.Digest) error
	// The bounds of Config: MaxJSONSize, MaxArchiveEntries, and the
	// expansion limit (CompressedSize unset) for a compressed layer that a
	// check decompresses.
	maxJSON    int64
	maxEntries int
	expansion  ExpansionLimit
}

// importIndex reads the tar stream r into the content store and returns the
// entries of the index of the images it holds, as archive.ImportIndex does.
//
// Each blob is committed (containerd syncs it to disk, moves it into the
// store and records it) while the stream goes on to the next, up to
// commitsInFlight at once: the commits of an archive of many small blobs
// would otherwise take as long as writing them. All are done before the
// index is made.
func (in ingester) importIndex(ctx context.Context, r io.Reader) ([]ocispec.Descriptor, error) {
	tr := tar.NewReader(r)
	c := newContents(in.maxJSON, in.maxEntries)
	var bufs chunks
	commits, cctx := errgroup.WithContext(ctx)
	commits.SetLimit(commitsInFlight)
	err := c.walk(tr, func(hdr *tar.Header, name string) error {
		dgst, commit, err := in.sendBlob(cctx, tr, hdr.Size, "tar-"+name, digestOfName(name), &bufs)
		if err != nil {
			return fmt.Errorf("store %q: %w", hdr.Name, err)
		}
		c.blobs[name] = ocispec.Descriptor{Digest: dgst, Size: hdr.Size}
		commits.Go(func() error {
			if err := commit(); err != nil {
				return fmt.Errorf("store %q: %w", hdr.Name, err)
			}
			return nil
		})
		return nil
	})
	// A failed commit stops the walk (its context is cancelled): its error
	// is the one that says why.
	if cerr := commits.Wait(); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	return in.index(ctx, c)
}

// commitsInFlight is how many blobs of a stream are committed at once (see
// importIndex).
const commitsInFlight = 4

// index returns the entries of the index of the images an archive holds,
// from what its walk found: an OCI layout's index.json, or for a docker
// save, one manifest per image name, written here (dockerSaveIndex).
func (in ingester) index(ctx context.Context, c *contents) ([]ocispec.Descriptor, error) {
	if c.ociLayout.Version != "" {
		return c.ociManifests()
	}
	if c.mfsts == nil {
		return nil, errNoManifest
	}
	return in.dockerSaveIndex(ctx, c)
}

// ociManifests are the entries of an OCI layout's index.json.
func (c *contents) ociManifests() ([]ocispec.Descriptor, error) {
	if c.ociLayout.Version != ocispec.ImageLayoutVersion {
		return nil, invalid(fmt.Errorf("OCI layout version %s is not supported (want %s)", shortQuote(c.ociLayout.Version), ocispec.ImageLayoutVersion))
	}
	if c.ociIndex == nil {
		return nil, invalid(errors.New("OCI layout has no index.json"))
	}
	manifests, err := parseOCIIndex(c.ociIndex)
	if err != nil {
		return nil, invalid(fmt.Errorf("index.json: %w", err))
	}
	return manifests, nil
}

// writeBlob writes the size bytes of r to the content store under ref and
// returns their digest, committing it with opts. With expected set and the
// blob already in the store, r is skipped instead.
func (in ingester) writeBlob(ctx context.Context, r io.Reader, size int64, ref string, expected digest.Digest, bufs *chunks, opts ...content.Opt) (digest.Digest, error) {
	dgst, commit, err := in.sendBlob(ctx, r, size, ref, expected, bufs, opts...)
	if err != nil {
		return "", err
	}
	return dgst, commit()
}

// sendBlob is writeBlob up to the commit: it sends the size bytes of r (or
// skips them, for a blob the store has) and returns their digest, and the
// commit that ends the blob's write, which must be called. r has been read
// to the blob's end once it returns, so a stream can go on to the next
// blob while this one is committed.
func (in ingester) sendBlob(ctx context.Context, r io.Reader, size int64, ref string, expected digest.Digest, bufs *chunks, opts ...content.Opt) (digest.Digest, func() error, error) {
	done := func() error { return nil }
	w, present, err := in.open(ctx, ref, size, expected)
	switch {
	case err != nil:
		return "", nil, err
	case present:
		return expected, done, readFailure(skip(r))
	}
	handedOn := false // to the commit returned, which closes w
	defer func() {
		if w != nil && !handedOn { // nil if reopening it failed or found the blob present
			w.close()
		}
	}()

	if w.offset > 0 {
		// containerd holds all of the blob already, in another namespace
		// (content is shared between them), or an interrupted import left
		// some of it under ref. The first is committed as it is; the second
		// is dropped and the blob written anew: what was left under a
		// name that is not its digest could be anything, and containerd's
		// truncation of it does not hold for a blob another namespace has.
		if expected != "" && w.offset == size {
			err := in.commit(ctx, w, ref, size, expected, opts...)
			if err == nil {
				return expected, done, readFailure(skip(r))
			}
			if !errdefs.IsFailedPrecondition(err) {
				return "", nil, err
			}
		}
		w.close()
		if err := in.cs.Abort(ctx, ref); err != nil && !errdefs.IsNotFound(err) {
			return "", nil, fmt.Errorf("drop the interrupted ingest %s: %w", ref, err)
		}
		w, present, err = in.open(ctx, ref, size, expected)
		switch {
		case err != nil:
			return "", nil, err
		case present:
			return expected, done, readFailure(skip(r))
		}
	}

	dgst, err := w.copy(r, size, bufs)
	if err != nil {
		return "", nil, err
	}
	if expected != "" && dgst != expected {
		return "", nil, invalid(fmt.Errorf("content of %s has digest %s: %w", expected, dgst, errdefs.ErrFailedPrecondition))
	}
	handedOn = true
	return dgst, func() error {
		defer w.close()
		// A blob committed under the import's lease is held by it; one
		// that is there already is not, and is added to the lease before
		// the commit, so that it cannot be collected in between.
		if _, err := in.cs.Info(ctx, dgst); err == nil {
			if err := in.hold(ctx, dgst); err != nil {
				return err
			}
		}
		return in.commit(ctx, w, ref, size, dgst, opts...)
	}, nil
}

// open opens the write session of the blob ref, or reports it present when
// expected is set and containerd holds it (then it is held by the lease).
func (in ingester) open(ctx context.Context, ref string, size int64, expected digest.Digest) (*blobWriter, bool, error) {
	for attempt := 0; ; attempt++ {
		w, err := openBlob(ctx, in.writes, ref, size, expected)
		if errdefs.IsAlreadyExists(err) && expected != "" {
			kept, err := in.reuse(ctx, expected)
			if err != nil || kept {
				return nil, kept, err
			}
			if attempt == 0 {
				continue // collected just now: write it after all
			}
		}
		if err != nil {
			return nil, false, fmt.Errorf("open content writer: %w", err)
		}
		return w, false, nil
	}
}

// commit commits what w wrote as the blob dgst. If containerd has the blob
// already, it is held by the lease instead.
func (in ingester) commit(ctx context.Context, w *blobWriter, ref string, size int64, dgst digest.Digest, opts ...content.Opt) error {
	err := w.commit(size, dgst, opts...)
	if errdefs.IsAlreadyExists(err) {
		kept, err := in.reuse(ctx, dgst)
		if err != nil {
			return err
		}
		if !kept {
			return fmt.Errorf("blob %s was garbage collected as it was imported, try again: %w", dgst, errdefs.ErrUnavailable)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("commit %s: %w", ref, err)
	}
	return nil
}

// reuse adds a blob containerd reported present to the import's lease and
// reports whether it is still there: containerd (1.6 at least) does not
// lease a blob it answers "already exists" for, so the garbage collector
// may take it (the content of a just-deleted image) until it is leased.
func (in ingester) reuse(ctx context.Context, d digest.Digest) (bool, error) {
	if err := in.hold(ctx, d); err != nil {
		return false, err
	}
	if _, err := in.cs.Info(ctx, d); err != nil {
		if errdefs.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("content info %s: %w", d, err)
	}
	return true, nil
}

// skip moves past the rest of r: a seek where r can, else a read.
func skip(r io.Reader) error {
	if s, ok := r.(io.Seeker); ok {
		_, err := s.Seek(0, io.SeekEnd)
		return err
	}
	_, err := io.Copy(io.Discard, r)
	return err
}

// writeJSONBlob writes v as JSON to the content store, labelled.
func (in ingester) writeJSONBlob(ctx context.Context, v any, mediaType string, labels map[string]string) (ocispec.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if _, err := in.writeBlob(ctx, bytes.NewReader(b), desc.Size, "manifest-"+desc.Digest.String(), desc.Digest, &chunks{}, content.WithLabels(labels)); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}
