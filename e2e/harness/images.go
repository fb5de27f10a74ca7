package harness

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is a test image built in memory: known files in known layers, so a
// test can check the digests containerd ends up with.
type Image struct {
	// Name is the reference the archive gives it ("busybox:1.36").
	Name     string
	Platform ocispec.Platform
	// Layers are uncompressed layer tars.
	Layers [][]byte
	// Config is the image config JSON.
	Config []byte
}

// NewImage builds an image for platform ("linux/amd64") with one layer per
// map of file path → content.
func NewImage(name, platform string, layers ...map[string]string) *Image {
	p := parsePlatform(platform)
	img := &Image{Name: name, Platform: p}
	for _, files := range layers {
		img.Layers = append(img.Layers, layerTar(files))
	}
	img.Config = imageConfig(p, defaultRuntimeConfig(), img.Layers)
	return img
}

// File is one regular file of a layer built with Layer.
type File struct {
	Name string // path inside the image, without a leading slash
	Mode int64  // permission bits; 0 means 0644
	Data []byte
}

// Layer builds an uncompressed layer tar holding files and their parent
// directories. Unlike NewImage's layers, its files may be executable.
func Layer(files ...File) []byte {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return writeLayer(sorted)
}

// NewImageFromLayers builds an image from uncompressed layer tars (see
// Layer) with the runtime configuration cfg (Entrypoint, Cmd, Env…), for an
// image that is meant to run.
func NewImageFromLayers(name, platform string, cfg ocispec.ImageConfig, layers ...[]byte) *Image {
	p := parsePlatform(platform)
	img := &Image{Name: name, Platform: p, Layers: layers}
	img.Config = imageConfig(p, cfg, img.Layers)
	return img
}

// RandomImage builds an image whose layers hold size bytes of data derived
// from seed, half random and half compressible, like real layers.
func RandomImage(name, platform string, seed uint64, layers int, size int) *Image {
	p := parsePlatform(platform)
	img := &Image{Name: name, Platform: p}
	r := rand.New(rand.NewPCG(seed, uint64(layers)))
	for i := range layers {
		data := make([]byte, size)
		for j := 0; j < size/2; j += 8 {
			v := r.Uint64()
			for k := 0; k < 8 && j+k < size/2; k++ {
				data[j+k] = byte(v >> (8 * k))
			}
		}
		copy(data[size/2:], bytes.Repeat([]byte(fmt.Sprintf("layer %d of %s\n", i, name)), size/2/16+1))
		img.Layers = append(img.Layers, layerTar(map[string]string{fmt.Sprintf("data/%d.bin", i): string(data)}))
	}
	img.Config = imageConfig(p, defaultRuntimeConfig(), img.Layers)
	return img
}

func parsePlatform(s string) ocispec.Platform {
	parts := strings.Split(s, "/")
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) > 2 {
		p.Variant = parts[2]
	}
	return p
}

var epoch = time.Unix(1700000000, 0).UTC()

func layerTar(files map[string]string) []byte {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	sorted := make([]File, 0, len(names))
	for _, n := range names {
		sorted = append(sorted, File{Name: n, Data: []byte(files[n])})
	}
	return writeLayer(sorted)
}

// writeLayer writes files, sorted by name, as a reproducible layer tar.
func writeLayer(files []File) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		for d := dirOf(f.Name); d != "" && !dirs[d]; d = dirOf(d) {
			dirs[d] = true
			_ = tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		_ = tw.WriteHeader(&tar.Header{Name: f.Name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(f.Data)), ModTime: epoch, Format: tar.FormatPAX})
		_, _ = tw.Write(f.Data)
	}
	_ = tw.Close()
	return buf.Bytes()
}

func dirOf(p string) string {
	i := strings.LastIndex(p, "/")
	if i <= 0 {
		return ""
	}
	return p[:i]
}

// defaultRuntimeConfig is the runtime configuration of NewImage's images.
func defaultRuntimeConfig() ocispec.ImageConfig {
	return ocispec.ImageConfig{Cmd: []string{"/bin/true"}, Env: []string{"PATH=/bin"}}
}

func imageConfig(p ocispec.Platform, rc ocispec.ImageConfig, layers [][]byte) []byte {
	cfg := ocispec.Image{
		Created:  &epoch,
		Platform: p,
		Config:   rc,
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromBytes(l))
	}
	b, _ := json.Marshal(cfg)
	return b
}

// ConfigDigest is the image ID: the digest of its config.
func (i *Image) ConfigDigest() digest.Digest { return digest.FromBytes(i.Config) }

// DiffIDs are the digests of the uncompressed layers.
func (i *Image) DiffIDs() []digest.Digest {
	var out []digest.Digest
	for _, l := range i.Layers {
		out = append(out, digest.FromBytes(l))
	}
	return out
}

// WriteDockerSave writes imgs as one `docker save` archive in the classic
// format (manifest.json, <id>.json configs, <id>/layer.tar), several images
// sharing layers written once, as docker save does.
func WriteDockerSave(w io.Writer, imgs ...*Image) error {
	tw := tar.NewWriter(w)
	written := map[string]bool{}
	type entry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var manifest []entry
	for _, img := range imgs {
		cfgName := hexOf(img.Config) + ".json"
		e := entry{Config: cfgName, RepoTags: []string{img.Name}}
		if !written[cfgName] {
			if err := writeFile(tw, cfgName, img.Config); err != nil {
				return err
			}
			written[cfgName] = true
		}
		for _, l := range img.Layers {
			name := hexOf(l) + "/layer.tar"
			if !written[name] {
				if err := writeFile(tw, name, l); err != nil {
					return err
				}
				written[name] = true
			}
			e.Layers = append(e.Layers, name)
		}
		manifest = append(manifest, e)
	}
	b, _ := json.Marshal(manifest)
	if err := writeFile(tw, "manifest.json", b); err != nil {
		return err
	}
	return tw.Close()
}

// OCIEntry is one entry of an OCI layout's index.json: a single image, or
// a multi-platform index when it has several images.
type OCIEntry struct {
	Images []*Image
	// Annotations on the index.json entry, usually the image name:
	// ocispec.AnnotationRefName and/or "io.containerd.image.name".
	Annotations map[string]string
	// Omit leaves out the blobs of these platforms ("linux/arm64"), as an
	// export of a single platform of a multi-platform image does.
	Omit []string
}

// OCIImage is the entry of one image named by a full reference in
// org.opencontainers.image.ref.name, as skopeo writes it.
func OCIImage(img *Image) OCIEntry {
	return OCIEntry{Images: []*Image{img}, Annotations: map[string]string{ocispec.AnnotationRefName: img.Name}}
}

// OCIDigests are the digests of what WriteOCILayout wrote for an entry.
type OCIDigests struct {
	Target    digest.Digest   // what index.json points at
	Manifests []digest.Digest // per image, in order
}

// WriteOCILayout writes an OCI image layout as a tar, layers gzipped.
func WriteOCILayout(w io.Writer, entries ...OCIEntry) ([]OCIDigests, error) {
	tw := tar.NewWriter(w)
	written := map[digest.Digest]bool{}
	blob := func(b []byte) (digest.Digest, error) {
		d := digest.FromBytes(b)
		if written[d] {
			return d, nil
		}
		written[d] = true
		return d, writeFile(tw, "blobs/sha256/"+d.Encoded(), b)
	}
	if err := writeFile(tw, "oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return nil, err
	}
	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	var out []OCIDigests
	for _, e := range entries {
		var ds OCIDigests
		var descs []ocispec.Descriptor
		for _, img := range e.Images {
			omit := false
			for _, o := range e.Omit {
				omit = omit || platformString(img.Platform) == o
			}
			m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
			m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(img.Config), Size: int64(len(img.Config))}
			var blobs [][]byte
			for _, l := range img.Layers {
				gz := gzipBytes(l)
				m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(gz), Size: int64(len(gz))})
				blobs = append(blobs, gz)
			}
			mb, _ := json.Marshal(m)
			md := digest.FromBytes(mb)
			if !omit {
				for _, b := range append(blobs, img.Config, mb) {
					if _, err := blob(b); err != nil {
						return nil, err
					}
				}
			}
			p := img.Platform
			descs = append(descs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mb)), Platform: &p})
			ds.Manifests = append(ds.Manifests, md)
		}
		top := descs[0]
		if len(descs) > 1 {
			ib, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: descs})
			d, err := blob(ib)
			if err != nil {
				return nil, err
			}
			top = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: d, Size: int64(len(ib))}
		} else {
			top.Platform = nil
		}
		top.Annotations = e.Annotations
		ds.Target = top.Digest
		index.Manifests = append(index.Manifests, top)
		out = append(out, ds)
	}
	ib, _ := json.Marshal(index)
	if err := writeFile(tw, "index.json", ib); err != nil {
		return nil, err
	}
	return out, tw.Close()
}

func platformString(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

func hexOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func writeFile(tw *tar.Writer, name string, b []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

// FilterTar rewrites a tar keeping the entries keep accepts.
func FilterTar(data []byte, keep func(name string) bool) ([]byte, error) {
	return rewriteTar(data, func(h *tar.Header) bool { return keep(h.Name) })
}

// WithPAXRecord returns the tar data with the PAX record key=value added to
// the entries whose name match accepts: a way to build the unusual archives
// (GNU sparse markers, vendor records) real tools write. archive/tar will
// not write GNU.sparse.* records itself, so those are written under a
// placeholder key of the same length and renamed in the bytes (PAX records
// carry no checksum).
func WithPAXRecord(data []byte, match func(name string) bool, key, value string) ([]byte, error) {
	const sparse, placeholder = "GNU.sparse.", "XNU.sparse."
	written := key
	if rest, ok := strings.CutPrefix(key, sparse); ok {
		written = placeholder + rest
	}
	out, err := rewriteTar(data, func(h *tar.Header) bool {
		if match(h.Name) {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords[written] = value
			h.Format = tar.FormatPAX
		}
		return true
	})
	if err != nil || written == key {
		return out, err
	}
	return bytes.ReplaceAll(out, []byte(" "+written+"="), []byte(" "+key+"=")), nil
}

// rewriteTar copies the tar data, entry by entry, through edit, which may
// change a header and drops the entry by returning false.
func rewriteTar(data []byte, edit func(*tar.Header) bool) ([]byte, error) {
	tr := tar.NewReader(bytes.NewReader(data))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if !edit(h) {
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return nil, err
		}
	}
	err := tw.Close()
	return buf.Bytes(), err
}
