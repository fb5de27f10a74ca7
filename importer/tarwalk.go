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

// jsonLimit bounds each metadata file of an archive read into memory.
const jsonLimit = 20 << 20

// contents is what a walk of an archive found besides the blobs' data: its
// metadata files, its symlinks and the blobs written so far, by entry name.
type contents struct {
	ociLayout ocispec.ImageLayout
	ociIndex  []byte // index.json, decoded only for an OCI layout
	mfsts     []dockerManifest
	symlinks  map[string]string
	blobs     map[string]ocispec.Descriptor
}

func newContents() *contents {
	return &contents{symlinks: map[string]string{}, blobs: map[string]ocispec.Descriptor{}}
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
			return nil, "", err
		}
		if hdr.Typeflag == tar.TypeSymlink {
			c.symlinks[hdr.Name] = path.Join(path.Dir(hdr.Name), hdr.Linkname)
		}
		// tar.Reader reports the old TypeRegA as TypeReg.
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(hdr.Name)
		switch name {
		case ocispec.ImageLayoutFile:
			if err := json.NewDecoder(io.LimitReader(tr, jsonLimit)).Decode(&c.ociLayout); err != nil {
				return nil, "", fmt.Errorf("read OCI layout file %q: %w", hdr.Name, err)
			}
		case ocispec.ImageIndexFile:
			if hdr.Size > jsonLimit {
				return nil, "", fmt.Errorf("OCI index %q is larger than %d MiB", hdr.Name, jsonLimit>>20)
			}
			if c.ociIndex, err = io.ReadAll(tr); err != nil {
				return nil, "", fmt.Errorf("read OCI index %q: %w", hdr.Name, err)
			}
		case "manifest.json":
			if err := json.NewDecoder(io.LimitReader(tr, jsonLimit)).Decode(&c.mfsts); err != nil {
				return nil, "", fmt.Errorf("read docker manifest %q: %w", hdr.Name, err)
			}
		default:
			return hdr, name, nil
		}
	}
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
