package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	ctrdref "github.com/containerd/containerd/v2/pkg/reference"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// dockerManifest is an entry of a docker save manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// parseDockerManifests decodes a docker save manifest.json: a list of
// entries, each naming its config.
func parseDockerManifests(b []byte) ([]dockerManifest, error) {
	var mfsts []dockerManifest
	if err := json.Unmarshal(b, &mfsts); err != nil {
		return nil, err
	}
	if mfsts == nil {
		return nil, errors.New("no images listed")
	}
	for i, m := range mfsts {
		if m.Config == "" {
			return nil, fmt.Errorf("entry %d names no config", i)
		}
	}
	return mfsts, nil
}

// dockerSaveIndex writes the manifest of each image of a docker save and
// returns the entries of the index of its images, one per image name. The
// index itself is not written: no image would reference it.
func (in ingester) dockerSaveIndex(ctx context.Context, c *contents) ([]ocispec.Descriptor, error) {
	blobs := c.blobs
	for name, linkname := range c.symlinks {
		desc, ok := blobs[linkname]
		if !ok {
			return nil, invalid(fmt.Errorf("layer %s links to %s, which the archive does not hold", shortQuote(name), shortQuote(linkname)))
		}
		blobs[name] = desc
	}

	var idx []ocispec.Descriptor
	for _, mfst := range c.mfsts {
		desc, err := in.writeDockerManifest(ctx, mfst, blobs)
		if err != nil {
			return nil, err
		}
		entries, err := namedEntries(desc, mfst.RepoTags)
		if err != nil {
			return nil, err
		}
		idx = append(idx, entries...)
	}
	return idx, nil
}

// writeDockerManifest writes the image manifest of one entry of a docker
// save's manifest.json, from the archive's blobs by entry name, and returns
// its descriptor with the platform of its config. The diff IDs the config
// gives must be those of the layers.
func (in ingester) writeDockerManifest(ctx context.Context, mfst dockerManifest, blobs map[string]ocispec.Descriptor) (ocispec.Descriptor, error) {
	config, ok := blobs[mfst.Config]
	if !ok {
		return ocispec.Descriptor{}, invalid(fmt.Errorf("manifest.json names config %s, which the archive does not hold", shortQuote(mfst.Config)))
	}
	config.MediaType = images.MediaTypeDockerSchema2Config
	img, err := in.readConfig(ctx, mfst.Config, config)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := in.checkDiffIDs(ctx, mfst, img.RootFS.DiffIDs, blobs); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layers of %v: %w", mfst.RepoTags, err)
	}
	layers, err := in.resolveLayers(ctx, mfst.Layers, blobs)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layers of %v: %w", mfst.RepoTags, err)
	}
	manifest := struct {
		SchemaVersion int                  `json:"schemaVersion"`
		MediaType     string               `json:"mediaType"`
		Config        ocispec.Descriptor   `json:"config"`
		Layers        []ocispec.Descriptor `json:"layers"`
	}{SchemaVersion: 2, MediaType: images.MediaTypeDockerSchema2Manifest, Config: config, Layers: layers}
	// The manifest is committed with the labels that keep its config
	// and layers from the garbage collector, instead of being updated
	// with them afterwards: one write transaction less per image.
	desc, err := in.writeJSONBlob(ctx, manifest, manifest.MediaType, childLabels(ctx, append([]ocispec.Descriptor{config}, layers...)))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store manifest of %v: %w", mfst.RepoTags, err)
	}
	// A manifest has the one platform of its config, as containerd's
	// images.ConfigPlatform reads it.
	p := platforms.Normalize(img.Platform)
	desc.Platform = &p
	// A Windows image without OS version is taken to match the host,
	// as containerd does (containerd/containerd#5690).
	if p.OS == "windows" && p.OSVersion == "" {
		desc.Platform.OSVersion = platforms.DefaultSpec().OSVersion
	}
	return desc, nil
}

// dockerConfig is what an image config of a docker save tells the import.
type dockerConfig struct {
	ocispec.Platform
	RootFS ocispec.RootFS `json:"rootfs"`
}

// readConfig reads the config desc, the entry name of the archive, bounded
// by the import's JSON limit.
func (in ingester) readConfig(ctx context.Context, name string, desc ocispec.Descriptor) (dockerConfig, error) {
	var cfg dockerConfig
	if desc.Size > in.maxJSON {
		return cfg, tooLarge("config "+shortQuote(name), in.maxJSON)
	}
	b, err := content.ReadBlob(ctx, in.cs, desc)
	if err != nil {
		return cfg, fmt.Errorf("read config %s: %w", shortQuote(name), err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, invalid(fmt.Errorf("decode config %s: %w", shortQuote(name), err))
	}
	return cfg, nil
}

// checkDiffIDs checks that the layers of mfst are those the config's diff
// IDs name: the digest of each uncompressed layer, or of a compressed one
// decompressed. It sets the media type of each layer's blob as it goes.
func (in ingester) checkDiffIDs(ctx context.Context, mfst dockerManifest, diffIDs []digest.Digest, blobs map[string]ocispec.Descriptor) error {
	if len(diffIDs) != len(mfst.Layers) {
		return invalid(fmt.Errorf("config %s gives %d diff IDs for %d layers", shortQuote(mfst.Config), len(diffIDs), len(mfst.Layers)))
	}
	for i, f := range mfst.Layers {
		desc, ok := blobs[f]
		if !ok {
			return invalid(fmt.Errorf("layer %s, which the archive does not hold", shortQuote(f)))
		}
		if desc.MediaType == "" {
			mt, err := layerMediaType(ctx, in.cs, desc)
			if err != nil {
				return fmt.Errorf("compression of layer %s: %w", shortQuote(f), err)
			}
			desc.MediaType = mt
			blobs[f] = desc
		}
		got := desc.Digest
		if desc.MediaType != images.MediaTypeDockerSchema2Layer {
			var err error
			if got, err = in.uncompressedDigest(ctx, desc); err != nil {
				return fmt.Errorf("layer %s: %w", shortQuote(f), err)
			}
		}
		if got != diffIDs[i] {
			return invalid(fmt.Errorf("layer %s has diff ID %s, but config %s says %s", shortQuote(f), got, shortQuote(mfst.Config), diffIDs[i]))
		}
	}
	return nil
}

// uncompressedDigest is the digest of the compressed layer desc,
// decompressed within the expansion limit, as a compressed archive is: a
// layer that is a decompression bomb fails rather than keep a CPU busy.
func (in ingester) uncompressedDigest(ctx context.Context, desc ocispec.Descriptor) (digest.Digest, error) {
	ra, err := in.cs.ReaderAt(ctx, desc)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	dr, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		return "", invalid(fmt.Errorf("decompress %s: %w", desc.Digest, err))
	}
	defer dr.Close()
	limit := in.expansion
	limit.CompressedSize = desc.Size
	d, err := digest.Canonical.FromReader(&limitedReader{r: dr, limit: limit, max: limit.Max()})
	if err != nil {
		return "", invalid(fmt.Errorf("decompress %s: %w", desc.Digest, err))
	}
	return d, nil
}

// namedEntries are the index entries of the manifest desc: one per name in
// repoTags, annotated with it, or desc alone for an image without names.
func namedEntries(desc ocispec.Descriptor, repoTags []string) ([]ocispec.Descriptor, error) {
	if len(repoTags) == 0 {
		return []ocispec.Descriptor{desc}, nil
	}
	var entries []ocispec.Descriptor
	for _, ref := range repoTags {
		named, err := reference.ParseDockerRef(ref)
		if err != nil {
			return nil, invalid(fmt.Errorf("normalize image ref %s: %w", shortQuote(ref), err))
		}
		d := desc
		d.Annotations = map[string]string{
			images.AnnotationImageName: named.String(),
			ocispec.AnnotationRefName:  ociReferenceName(named.String()),
		}
		entries = append(entries, d)
	}
	return entries, nil
}

// resolveLayers gives the layers of a docker manifest their descriptors:
// a blob with a compressed twin in the store (labelled with its
// uncompressed digest) is replaced by the twin, as containerd does; the
// media type comes from the blob's first bytes.
func (in ingester) resolveLayers(ctx context.Context, files []string, blobs map[string]ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	cs := in.cs
	layers := make([]ocispec.Descriptor, len(files))
	filters := make([]string, len(files))
	descs := map[digest.Digest]*ocispec.Descriptor{}
	for i, f := range files {
		desc, ok := blobs[f]
		if !ok {
			return nil, invalid(fmt.Errorf("layer %s not found", shortQuote(f)))
		}
		layers[i] = desc
		descs[desc.Digest] = &layers[i]
		filters[i] = fmt.Sprintf("labels.\"%s\"==%s", labelUncompressed, desc.Digest.String())
	}
	err := cs.Walk(ctx, func(info content.Info) error {
		if d, ok := info.Labels[labelUncompressed]; ok {
			if desc := descs[digest.Digest(d)]; desc != nil {
				if err := in.hold(ctx, info.Digest); err != nil {
					return err
				}
				desc.Digest, desc.Size = info.Digest, info.Size
				mt, err := layerMediaType(ctx, cs, *desc)
				if err != nil {
					return err
				}
				desc.MediaType = mt
			}
		}
		return nil
	}, filters...)
	if err != nil {
		return nil, fmt.Errorf("look for compressed twins of layers: %w", err)
	}
	for i := range layers {
		if layers[i].MediaType != "" {
			continue
		}
		mt, err := layerMediaType(ctx, cs, layers[i])
		if err != nil {
			return nil, fmt.Errorf("compression of layer %q: %w", files[i], err)
		}
		layers[i].MediaType = mt
	}
	return layers, nil
}

// labelUncompressed is containerd's label of a compressed blob naming the
// digest of its uncompressed content.
const labelUncompressed = "containerd.io/uncompressed"

// layerMediaType is the docker media type of a layer blob: compressed
// (gzip, as docker names any compression) or not, from its first bytes.
func layerMediaType(ctx context.Context, cs content.Store, desc ocispec.Descriptor) (string, error) {
	ra, err := cs.ReaderAt(ctx, desc)
	if err != nil {
		return "", fmt.Errorf("open layer %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	head := make([]byte, 10)
	n, err := ra.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read header of layer %s: %w", desc.Digest, err)
	}
	if n == 0 {
		return images.MediaTypeDockerSchema2Layer, nil
	}
	if compression.DetectCompression(head[:n]) == compression.Uncompressed {
		return images.MediaTypeDockerSchema2Layer, nil
	}
	return images.MediaTypeDockerSchema2LayerGzip, nil
}

// childLabels are the labels containerd's images.SetChildrenLabels would
// set on a blob with these children, computed without setting them.
func childLabels(ctx context.Context, children []ocispec.Descriptor) map[string]string {
	var c labelCapture
	h := images.SetChildrenLabels(&c, func(context.Context, ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		return children, nil
	})
	_, _ = h(ctx, ocispec.Descriptor{}) // labelCapture never fails
	return c.labels
}

// labelCapture is the content.Manager of childLabels: it keeps the labels
// of an update instead of applying them.
type labelCapture struct {
	content.Manager
	labels map[string]string
}

func (c *labelCapture) Update(_ context.Context, info content.Info, _ ...string) (content.Info, error) {
	c.labels = info.Labels
	return info, nil
}

// ociReferenceName is the org.opencontainers.image.ref.name of an image
// name: its tag, or the whole name for a name by digest only.
func ociReferenceName(name string) string {
	if spec, err := ctrdref.Parse(name); err == nil && spec.Object != "" && spec.Object[0] != '@' {
		return spec.Object
	}
	return name
}
