package importer

import (
	"archive/tar"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/pkg/archive/compression"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// blobWriters is how many blobs of an uncompressed archive are written to
// containerd at once. containerd hashes and writes each stream on one core,
// so a single stream leaves the other cores of a node idle.
const blobWriters = 3

// errSparse is an archive with sparse entries, whose data is not one
// contiguous section of the file.
var errSparse = errors.New("archive has sparse entries")

// section is where the data of a blob entry lies in the archive file.
type section struct {
	entry     string // the name as the archive spells it, for errors
	name      string // the clean name blobs are known by
	off, size int64
}

// importIndexAt imports an uncompressed archive that can be read at any
// offset, and returns what importIndex would. A first pass reads the tar
// headers and the metadata files and seeks over the data; then the blobs are
// written blobWriters at a time, each from its own section of the file,
// largest first. count wraps every reader of blob data, for progress; a
// blob containerd already holds is sought over, not read.
//
// The digests of the layers of a classic docker save, whose names are not
// digests, are known before they are read (knownLayerDigests), so layers
// containerd already holds are skipped as in an OCI layout.
//
// It returns errSparse, having written nothing, for an archive whose
// entries cannot be read as sections; the stream path reads those.
func (in ingester) importIndexAt(ctx context.Context, ra io.ReaderAt, size int64, count func(*io.SectionReader) io.Reader) ([]ocispec.Descriptor, error) {
	c := newContents(in.maxJSON, in.maxEntries)
	secs, err := c.sections(io.NewSectionReader(ra, 0, size))
	if err != nil {
		return nil, err
	}
	known := knownLayerDigests(ra, c, secs)
	digests, err := in.writeSections(ctx, ra, secs, known, count)
	if err != nil {
		return nil, err
	}
	for i, s := range secs {
		c.blobs[s.name] = ocispec.Descriptor{Digest: digests[i], Size: s.size}
	}
	return in.index(ctx, c)
}

// sections walks the archive sr, reading its metadata files into c, and
// returns where the data of each blob entry lies; of entries of the same
// name, the last, as in a stream. It returns errSparse for an archive with
// sparse entries.
func (c *contents) sections(sr *io.SectionReader) ([]section, error) {
	tr := tar.NewReader(sr) // seeks over data it is not asked to read
	var secs []section
	seen := map[string]int{}
	err := c.walk(tr, func(hdr *tar.Header, name string) error {
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				return errSparse
			}
		}
		off, err := sr.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		s := section{entry: hdr.Name, name: name, off: off, size: hdr.Size}
		if i, ok := seen[name]; ok { // a later entry of the same name wins, as in a stream
			secs[i] = s
			return nil
		}
		seen[name] = len(secs)
		secs = append(secs, s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return secs, nil
}

// writeSections writes the blobs of secs to the content store, blobWriters
// at a time, largest first, each from its own section of ra read through
// count, and returns their digests in the order of secs. A blob whose
// digest its name or known gives is not written if containerd holds it.
func (in ingester) writeSections(ctx context.Context, ra io.ReaderAt, secs []section, known map[string]digest.Digest, count func(*io.SectionReader) io.Reader) ([]digest.Digest, error) {
	order := make([]int, len(secs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(secs[b].size, secs[a].size) })

	digests := make([]digest.Digest, len(secs))
	// The writers' buffers, passed from blob to blob.
	free := make(chan *chunks, blobWriters)
	for range blobWriters {
		free <- &chunks{}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(blobWriters)
	for _, i := range order {
		if gctx.Err() != nil {
			break // a blob failed: Wait reports it
		}
		g.Go(func() error {
			s := secs[i]
			want, by := digestOfName(s.name), ""
			if want == "" {
				want, by = known[s.name], " (digest from its config's diff ID)"
			}
			r := count(io.NewSectionReader(ra, s.off, s.size))
			bufs := <-free
			d, err := in.writeBlob(gctx, r, s.size, "tar-"+s.name, want, bufs)
			free <- bufs
			if err != nil {
				return fmt.Errorf("store %q%s: %w", s.entry, by, err)
			}
			digests[i] = d
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return digests, nil
}

// knownLayerDigests returns the digests of the uncompressed layers of the
// docker manifests in c, by entry name, as their images' configs give them
// (a layer's diff ID is the digest of its uncompressed tar). Layers it
// cannot tell are left out; the digest of a layer passed on is checked as it
// is written, so a config that lies fails the import.
func knownLayerDigests(ra io.ReaderAt, c *contents, secs []section) map[string]digest.Digest {
	byName := make(map[string]section, len(secs))
	for _, s := range secs {
		byName[s.name] = s
	}
	resolve := func(name string) (section, bool) {
		if target, ok := c.symlinks[name]; ok {
			name = target
		}
		s, ok := byName[path.Clean(name)]
		return s, ok
	}
	known := map[string]digest.Digest{}
	for _, m := range c.mfsts {
		cs, ok := resolve(m.Config)
		if !ok || cs.size > c.maxJSON {
			continue
		}
		var config struct {
			RootFS ocispec.RootFS `json:"rootfs"`
		}
		if json.NewDecoder(io.NewSectionReader(ra, cs.off, cs.size)).Decode(&config) != nil {
			continue
		}
		if len(config.RootFS.DiffIDs) != len(m.Layers) {
			continue
		}
		for i, l := range m.Layers {
			ls, ok := resolve(l)
			d := config.RootFS.DiffIDs[i]
			if !ok || d.Validate() != nil {
				continue
			}
			head := make([]byte, 10)
			n, _ := ra.ReadAt(head[:min(int64(len(head)), ls.size)], ls.off)
			if n == 0 || compression.DetectCompression(head[:n]) != compression.Uncompressed {
				continue
			}
			known[ls.name] = d
		}
	}
	return known
}
