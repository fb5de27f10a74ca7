package importer

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// contents is what a walk of an archive found besides the blobs' data: its
// metadata files, its symlinks and the blobs written so far, by entry name.
// What it keeps per entry is bounded by maxEntries, and each metadata file
// by maxJSON.
type contents struct {
	ociLayout  ocispec.ImageLayout
	ociIndex   []byte // index.json, decoded only for an OCI layout
	mfsts      []dockerManifest
	symlinks   map[string]string
	blobs      map[string]ocispec.Descriptor
	maxJSON    int64
	maxEntries int
	entries    int // seen so far
}

func newContents(maxJSON int64, maxEntries int) *contents {
	return &contents{symlinks: map[string]string{}, blobs: map[string]ocispec.Descriptor{}, maxJSON: maxJSON, maxEntries: maxEntries}
}

// walk calls f for each blob entry of tr (see nextBlob), with tr positioned
// at its data, until the archive ends or f fails.
func (c *contents) walk(tr *tar.Reader, f func(hdr *tar.Header, name string) error) error {
	for {
		hdr, name, err := c.nextBlob(tr)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := f(hdr, name); err != nil {
			return err
		}
	}
}

// nextBlob advances tr to the next regular entry that is a blob, reading the
// metadata files (oci-layout, index.json, manifest.json) and symlinks it
// passes on the way. It returns the entry's header and clean name, or io.EOF.
// The metadata files are kept in memory, not written to containerd: no image
// references them.
func (c *contents) nextBlob(tr *tar.Reader) (*tar.Header, string, error) {
	for {
		hdr, err := tr.Next()
		if err != nil {
			return nil, "", readFailure(err)
		}
		if c.entries++; c.entries > c.maxEntries {
			return nil, "", tooManyEntries(c.maxEntries)
		}
		if hdr.Typeflag == tar.TypeSymlink {
			c.symlinks[hdr.Name] = path.Join(path.Dir(hdr.Name), hdr.Linkname)
		}
		// tar.Reader reports the old TypeRegA as TypeReg.
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(hdr.Name)
		if err := c.readMetadata(tr, hdr, name); !errors.Is(err, errNotMetadata) {
			if err != nil {
				return nil, "", err
			}
			continue
		}
		return hdr, name, nil
	}
}

// errNotMetadata is readMetadata's answer for an entry that is a blob.
var errNotMetadata = errors.New("not a metadata file")

// readMetadata reads the entry name if it is one of the metadata files, or
// returns errNotMetadata.
func (c *contents) readMetadata(tr *tar.Reader, hdr *tar.Header, name string) error {
	switch name {
	case ocispec.ImageLayoutFile, ocispec.ImageIndexFile, "manifest.json":
	default:
		return errNotMetadata
	}
	if hdr.Size > c.maxJSON {
		return tooLarge(name, c.maxJSON)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, readFailure(err))
	}
	switch name {
	case ocispec.ImageLayoutFile:
		if err := json.Unmarshal(b, &c.ociLayout); err != nil {
			return invalid(fmt.Errorf("decode %s: %w", name, err))
		}
	case ocispec.ImageIndexFile:
		c.ociIndex = b
	default:
		if c.mfsts, err = parseDockerManifests(b); err != nil {
			return invalid(fmt.Errorf("decode %s: %w", name, err))
		}
	}
	return nil
}

// digestOfName is the digest an OCI layout entry "blobs/<alg>/<hex>" names,
// or "" for any other entry.
func digestOfName(name string) digest.Digest {
	rest, ok := strings.CutPrefix(name, ocispec.ImageBlobsDir+"/")
	if !ok {
		return ""
	}
	alg, hex, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
	if d.Validate() != nil {
		return ""
	}
	return d
}
