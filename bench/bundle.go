package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	digest "github.com/opencontainers/go-digest"
)

// An air-gap bundle, issue #23's case 1: many images sharing base layers,
// a few large layers and many small ones, as one `docker save` of every
// image (each layer once) and as one archive per image (each with its base
// layers), both compressed as bundles are published.

// bundleLayer is one layer of the bundle, written from its seed.
type bundleLayer struct {
	id   int
	seed uint64
	size int64 // bytes of file data
}

// bundleImage is one image of the bundle and the layers it stacks.
type bundleImage struct {
	name   string // RepoTag
	layers []*bundleLayer
}

// bundleImages lays out n images over total bytes of distinct layer data:
// three base layers (6, 4 and 3% of total) under half, a quarter and a
// quarter of the images, a runtime layer (2%) under every other image, a
// large layer of its own (9%) for every tenth image, and the rest (about
// half) in 2–4 small layers of each image's own.
func bundleImages(n int, total int64) []bundleImage {
	var layers []*bundleLayer
	layer := func(pct float64) *bundleLayer {
		l := &bundleLayer{id: len(layers), seed: 20000 + uint64(len(layers)), size: int64(float64(total) * pct / 100)}
		layers = append(layers, l)
		return l
	}
	bases := []*bundleLayer{layer(6), layer(4), layer(3)}
	runtimeLayer := layer(2)
	var large, small int
	for i := range n {
		if i%10 == 0 {
			large++
		}
		small += 2 + i%3
	}
	rest := total
	for _, l := range layers {
		rest -= l.size
	}
	largeSize := int64(float64(total) * 0.09)
	rest -= int64(large) * largeSize
	smallPct := float64(max(rest, int64(small)<<12)) / float64(total) * 100 / float64(small)
	out := make([]bundleImage, n)
	for i := range n {
		img := bundleImage{name: fmt.Sprintf("bench/bundle-%02d:1", i)}
		switch {
		case i < n/2:
			img.layers = append(img.layers, bases[0])
		case i < 3*n/4:
			img.layers = append(img.layers, bases[1])
		default:
			img.layers = append(img.layers, bases[2])
		}
		if i%2 == 0 {
			img.layers = append(img.layers, runtimeLayer)
		}
		if i%10 == 0 {
			img.layers = append(img.layers, layer(9))
		}
		for range 2 + i%3 {
			img.layers = append(img.layers, layer(smallPct))
		}
		out[i] = img
	}
	return out
}

// writeBundle writes a `docker save` of imgs to path: every distinct layer
// once, as "<id>/layer.tar", then each image's config and manifest.json.
// The file is synced.
func writeBundle(path string, imgs []bundleImage) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	written := map[int]digest.Digest{}
	var manifest []map[string]any
	for _, img := range imgs {
		var diffIDs []digest.Digest
		var names []string
		for _, l := range img.layers {
			name := strconv.Itoa(l.id) + "/layer.tar"
			d, ok := written[l.id]
			if !ok {
				if d, err = writeBundleLayer(tw, name, l); err != nil {
					return fmt.Errorf("write %s layer %d: %w", path, l.id, err)
				}
				written[l.id] = d
			}
			diffIDs = append(diffIDs, d)
			names = append(names, name)
		}
		cfgName, err := writeBundleConfig(tw, diffIDs)
		if err != nil {
			return err
		}
		manifest = append(manifest, map[string]any{"Config": cfgName, "RepoTags": []string{img.name}, "Layers": names})
	}
	return finishSave(f, bw, tw, manifest)
}

func writeBundleLayer(tw *tar.Writer, name string, l *bundleLayer) (digest.Digest, error) {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: layerTarSize(l.size), ModTime: epoch}); err != nil {
		return "", err
	}
	h := sha256.New()
	line := fmt.Sprintf("bundle layer %d\n", l.id)
	if err := writeLayerContent(io.MultiWriter(tw, h), fmt.Sprintf("data/%d.bin", l.id), l.seed, line, l.size); err != nil {
		return "", err
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

func writeBundleConfig(tw *tar.Writer, diffIDs []digest.Digest) (string, error) {
	cb, err := imageConfig(diffIDs)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(cb)
	name := hex.EncodeToString(sum[:]) + ".json"
	return name, writeTarFile(tw, name, cb)
}

// bundleFiles are the compressed inputs of the bundle case.
type bundleFiles struct {
	images []bundleImage
	bytes  int64 // distinct layer data
	perImg int64 // layer data of the archives of one image each, in all
	// one holds the bundle of every image, each holds one archive per image,
	// by compression ("zst", "gz").
	one  map[string]string
	each map[string]string // a directory
}

// generateBundle writes the bundle and the archives of one image each,
// compressed with zstd (level, --long=27) and gzip; the uncompressed
// archives are removed once compressed.
func (b *bench) generateBundle() (*bundleFiles, error) {
	dir := filepath.Join(b.work, "bundle")
	bf := &bundleFiles{images: bundleImages(b.cfg.bundleImages, b.cfg.bundleSize), one: map[string]string{}, each: map[string]string{}}
	seen := map[int]bool{}
	for _, img := range bf.images {
		for _, l := range img.layers {
			bf.perImg += l.size
			if !seen[l.id] {
				seen[l.id] = true
				bf.bytes += l.size
			}
		}
	}
	zstdOpts := []string{"-" + strconv.Itoa(b.cfg.bundleZstd), "--long=27"}
	if b.cfg.bundleZstd > 19 {
		zstdOpts = append(zstdOpts, "--ultra")
	}
	compress := func(plain string) error {
		if err := compressZstd(plain, plain+".zst", zstdOpts...); err != nil {
			return err
		}
		if err := compressGzip(plain, plain+".gz"); err != nil {
			return err
		}
		return os.Remove(plain)
	}
	for _, key := range []string{"zst", "gz"} {
		bf.each[key] = filepath.Join(dir, "each-"+key)
		if err := os.MkdirAll(bf.each[key], 0o755); err != nil {
			return nil, err
		}
	}
	plain := filepath.Join(dir, "bundle.tar")
	if err := writeBundle(plain, bf.images); err != nil {
		return nil, err
	}
	if err := compress(plain); err != nil {
		return nil, err
	}
	for _, key := range []string{"zst", "gz"} {
		bf.one[key] = plain + "." + key
	}
	for i, img := range bf.images {
		p := filepath.Join(dir, fmt.Sprintf("image-%02d.tar", i))
		if err := writeBundle(p, []bundleImage{img}); err != nil {
			return nil, err
		}
		if err := compress(p); err != nil {
			return nil, err
		}
		for _, key := range []string{"zst", "gz"} {
			if err := os.Rename(p+"."+key, filepath.Join(bf.each[key], filepath.Base(p)+"."+key)); err != nil {
				return nil, err
			}
		}
	}
	return bf, nil
}
