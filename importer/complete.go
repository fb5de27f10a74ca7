package importer

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// An image is created or updated only when everything it references is in
// the content store, of the size its parent says (its digest is checked as
// it is written, or by the store that holds it): completeness walks each
// image before any image is written. The one thing that may be missing is
// a manifest of a multi-platform index (an export of some platforms only,
// as `ctr export --platform` writes): that platform is skipped. A manifest
// that is there with its config or a layer missing fails the import.

// completeness walks the images of one import. It gathers the garbage
// collection labels the blobs lack, to be set once every image is known to
// be complete.
type completeness struct {
	cs      content.Store
	maxJSON int64
	seen    map[digest.Digest]bool // blobs found complete
	skipped int                    // manifests of an index not in the archive
	updates []content.Info         // labels to set: see apply
}

func newCompleteness(cs content.Store, maxJSON int64) *completeness {
	return &completeness{cs: cs, maxJSON: maxJSON, seen: map[digest.Digest]bool{}}
}

// check reports an error unless the image img is complete.
func (c *completeness) check(ctx context.Context, img images.Image) error {
	_, err := c.blob(ctx, img.Target, "image "+img.Name, "manifest", false)
	return err
}

// blob checks desc, which plays role ("manifest", "config", "layer") in
// the image where names, and what it references. optional is a manifest
// of an index, which may be absent: blob reports whether it is there.
func (c *completeness) blob(ctx context.Context, desc ocispec.Descriptor, where, role string, optional bool) (bool, error) {
	if c.seen[desc.Digest] {
		return true, nil
	}
	info, err := c.cs.Info(ctx, desc.Digest)
	switch {
	case errdefs.IsNotFound(err) && optional:
		return false, nil
	case errdefs.IsNotFound(err):
		return false, invalid(fmt.Errorf("%s: %s %s is not in the archive", where, role, desc.Digest))
	case err != nil:
		return false, fmt.Errorf("content info %s: %w", desc.Digest, err)
	case info.Size != desc.Size:
		return false, invalid(fmt.Errorf("%s: %s %s is %d bytes, not the %d its descriptor says", where, role, desc.Digest, info.Size, desc.Size))
	}
	isIndex, isManifest := images.IsIndexType(desc.MediaType), images.IsManifestType(desc.MediaType)
	if (isIndex || isManifest || images.IsConfigType(desc.MediaType)) && desc.Size > c.maxJSON {
		return false, tooLarge(fmt.Sprintf("%s: %s %s", where, role, desc.Digest), c.maxJSON)
	}
	var children []ocispec.Descriptor
	if isIndex || isManifest {
		b, err := content.ReadBlob(ctx, c.cs, desc)
		if err != nil {
			return false, fmt.Errorf("read %s %s: %w", role, desc.Digest, err)
		}
		if isIndex {
			children, err = c.index(ctx, desc, b, where)
		} else {
			children, err = c.manifest(ctx, desc, b, where)
		}
		if err != nil {
			return false, err
		}
	}
	if labels := childLabels(ctx, children); !hasLabels(info.Labels, labels) {
		c.updates = append(c.updates, content.Info{Digest: desc.Digest, Labels: labels})
	}
	c.seen[desc.Digest] = true
	return true, nil
}

// index checks the manifests of the index desc, whose content is b, and
// returns them. Those absent are skipped, but not all of them.
func (c *completeness) index(ctx context.Context, desc ocispec.Descriptor, b []byte, where string) ([]ocispec.Descriptor, error) {
	manifests, err := parseOCIIndex(b)
	if err != nil {
		return nil, invalid(fmt.Errorf("%s: index %s: %w", where, desc.Digest, err))
	}
	present := 0
	for _, m := range manifests {
		w := where
		if m.Platform != nil {
			w += " (" + platforms.FormatAll(*m.Platform) + ")"
		}
		ok, err := c.blob(ctx, m, w, "manifest", true)
		if err != nil {
			return nil, err
		}
		if ok {
			present++
		} else {
			c.skipped++
		}
	}
	if present == 0 && len(manifests) > 0 {
		return nil, invalid(fmt.Errorf("%s: none of the %d manifests of index %s is in the archive", where, len(manifests), desc.Digest))
	}
	return manifests, nil
}

// manifest checks the config and layers of the image manifest desc, whose
// content is b, and returns them.
func (c *completeness) manifest(ctx context.Context, desc ocispec.Descriptor, b []byte, where string) ([]ocispec.Descriptor, error) {
	config, layers, err := parseManifest(b)
	if err != nil {
		return nil, invalid(fmt.Errorf("%s: manifest %s: %w", where, desc.Digest, err))
	}
	if _, err := c.blob(ctx, config, where, "config", false); err != nil {
		return nil, err
	}
	for _, l := range layers {
		if _, err := c.blob(ctx, l, where, "layer", false); err != nil {
			return nil, err
		}
	}
	return append([]ocispec.Descriptor{config}, layers...), nil
}

// apply sets the labels the walk found missing: a blob committed with
// them, or imported before, costs a read rather than a write transaction.
func (c *completeness) apply(ctx context.Context) error {
	for _, u := range c.updates {
		paths := make([]string, 0, len(u.Labels))
		for k := range u.Labels {
			paths = append(paths, "labels."+k)
		}
		if _, err := c.cs.Update(ctx, u, paths...); err != nil {
			return fmt.Errorf("label content %s: %w", u.Digest, err)
		}
	}
	return nil
}

// parseOCIIndex returns the manifests of an OCI index (index.json, or an
// index blob), each with a valid digest and a size that is not negative.
func parseOCIIndex(b []byte) ([]ocispec.Descriptor, error) {
	var index ocispec.Index
	if err := json.Unmarshal(b, &index); err != nil {
		return nil, fmt.Errorf("decode index: %w", err)
	}
	for i, m := range index.Manifests {
		if err := checkDescriptor(m); err != nil {
			return nil, fmt.Errorf("manifest %d: %w", i, err)
		}
	}
	return index.Manifests, nil
}

// parseManifest returns the config and layers of an image manifest.
func parseManifest(b []byte) (ocispec.Descriptor, []ocispec.Descriptor, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("decode manifest: %w", err)
	}
	if err := checkDescriptor(m.Config); err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("config: %w", err)
	}
	for i, l := range m.Layers {
		if err := checkDescriptor(l); err != nil {
			return ocispec.Descriptor{}, nil, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return m.Config, m.Layers, nil
}

func checkDescriptor(d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("digest %q: %w", shortQuote(string(d.Digest)), err)
	}
	if d.Size < 0 {
		return fmt.Errorf("size %d is negative", d.Size)
	}
	return nil
}
