package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// archiveSpec is a `docker save` archive the benchmark writes: one image of
// layers layers holding size bytes of file data in all, half random and half
// compressible in each layer, like real layers.
type archiveSpec struct {
	name   string // RepoTag, e.g. "bench/plain:1"
	seed   uint64
	layers int
	size   int64
	// blobNames names layers and config blobs/sha256/<digest>, as docker
	// save ≥ 25 does, instead of "<id>/layer.tar" and "<digest>.json".
	blobNames bool
	// sizes, when set, are the bytes of file data of each layer, in place
	// of size split evenly over layers.
	sizes []int64
	// bin, if set, is a static binary put at /NAME in a layer under the
	// others, the image's entrypoint: an image that runs.
	bin string
}

// layerSizes are the bytes of file data of each of s's layers.
func (s archiveSpec) layerSizes() []int64 {
	if s.sizes != nil {
		return s.sizes
	}
	out := make([]int64, s.layers)
	per := s.size / int64(s.layers)
	for i := range out {
		out[i] = per
	}
	out[len(out)-1] = s.size - per*int64(s.layers-1)
	return out
}

var epoch = time.Unix(1700000000, 0).UTC()

// writeDockerSave streams the archive of s to path without holding a layer
// in memory: each layer's tar header is written first (its size is known in
// advance), its data straight after while its digest is computed, then the
// config and manifest.json that need those digests. The file is synced.
func writeDockerSave(path string, s archiveSpec) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)

	var diffIDs []digest.Digest
	var layerNames []string
	if s.bin != "" {
		d, name, err := writeBinaryLayer(tw, s.bin)
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		diffIDs, layerNames = append(diffIDs, d), append(layerNames, name)
	}
	for i, n := range s.layerSizes() {
		d, name, err := writeLayer(tw, s, i, n)
		if err != nil {
			return fmt.Errorf("write %s layer %d: %w", path, i, err)
		}
		diffIDs = append(diffIDs, d)
		layerNames = append(layerNames, name)
	}

	rc := benchRunConfig()
	if s.bin != "" {
		rc = ocispec.ImageConfig{Entrypoint: []string{"/" + filepath.Base(s.bin)}, Env: []string{"PATH=/"}}
	}
	cb, err := imageConfigRun(diffIDs, rc)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(cb)
	cfgName := hex.EncodeToString(sum[:]) + ".json"
	if s.blobNames {
		cfgName = "blobs/sha256/" + hex.EncodeToString(sum[:])
	}
	if err := writeTarFile(tw, cfgName, cb); err != nil {
		return err
	}
	return finishSave(f, bw, tw, []map[string]any{{"Config": cfgName, "RepoTags": []string{s.name}, "Layers": layerNames}})
}

// finishSave writes manifest.json of manifest as the archive's last file,
// and closes and syncs the archive f.
func finishSave(f *os.File, bw *bufio.Writer, tw *tar.Writer, manifest any) error {
	mb, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	if err := writeTarFile(tw, "manifest.json", mb); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// writeLayer writes layer i, a tar of one directory and one file of n
// bytes, and returns its digest (the diff ID) and its name in the archive:
// "<v1 id>/layer.tar" as classic docker save names it, or with blobNames
// "blobs/sha256/<digest>" as docker ≥ 25 does, which takes a first pass over
// the (deterministic) data to learn the digest before the header.
func writeLayer(tw *tar.Writer, s archiveSpec, i int, n int64) (digest.Digest, string, error) {
	innerSize := layerTarSize(n)
	idSum := sha256.Sum256(fmt.Appendf(nil, "%s/%d/%d", s.name, s.seed, i))
	name := hex.EncodeToString(idSum[:]) + "/layer.tar"
	if s.blobNames {
		h := sha256.New()
		if err := writeLayerTar(h, s, i, n); err != nil {
			return "", "", err
		}
		name = "blobs/sha256/" + hex.EncodeToString(h.Sum(nil))
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: innerSize, ModTime: epoch}); err != nil {
		return "", "", err
	}
	h := sha256.New()
	if err := writeLayerTar(io.MultiWriter(tw, h), s, i, n); err != nil {
		return "", "", err
	}
	return digest.NewDigest(digest.SHA256, h), name, nil
}

// writeLayerTar writes the content of layer i to w.
func writeLayerTar(w io.Writer, s archiveSpec, i int, n int64) error {
	return writeLayerContent(w, fmt.Sprintf("data/%d.bin", i), s.seed+uint64(i), fmt.Sprintf("layer %d of %s\n", i, s.name), n)
}

// writeLayerContent writes a layer tar of one directory, data/, and one
// file of n bytes (writeData's from seed and line) to w.
func writeLayerContent(w io.Writer, file string, seed uint64, line string, n int64) error {
	inner := tar.NewWriter(w)
	if err := inner.WriteHeader(&tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch, Format: tar.FormatUSTAR}); err != nil {
		return err
	}
	if err := inner.WriteHeader(&tar.Header{Name: file, Typeflag: tar.TypeReg, Mode: 0o644, Size: n, ModTime: epoch, Format: tar.FormatUSTAR}); err != nil {
		return err
	}
	if err := writeData(inner, seed, line, n); err != nil {
		return err
	}
	return inner.Close()
}

// layerTarSize is the size of writeLayerContent's tar of n bytes: USTAR
// headers of short names are one block each; the tar ends with two.
func layerTarSize(n int64) int64 {
	const block = 512
	return block + block + (n+block-1)/block*block + 2*block
}

// writeData writes n bytes: the first half random from seed, the second half
// line repeated.
func writeData(w io.Writer, seed uint64, line string, n int64) error {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, 1<<20)
	var pattern []byte
	for len(pattern) < len(buf)+len(line) {
		pattern = append(pattern, line...)
	}
	half := n / 2
	for off := int64(0); off < n; {
		chunk := min(int64(len(buf)), n-off)
		if off < half {
			chunk = min(chunk, half-off)
			for j := int64(0); j+8 <= chunk; j += 8 {
				binary.LittleEndian.PutUint64(buf[j:], r.Uint64())
			}
			for j := chunk &^ 7; j < chunk; j++ {
				buf[j] = byte(r.Uint32())
			}
			if _, err := w.Write(buf[:chunk]); err != nil {
				return err
			}
		} else {
			start := (off - half) % int64(len(line))
			if _, err := w.Write(pattern[start : start+chunk]); err != nil {
				return err
			}
		}
		off += chunk
	}
	return nil
}

// benchRunConfig is the runtime configuration of the benchmark's images
// that are not meant to run.
func benchRunConfig() ocispec.ImageConfig {
	return ocispec.ImageConfig{Cmd: []string{"/bin/true"}, Env: []string{"PATH=/bin"}}
}

// imageConfig is the config of an image of the benchmark's with diffIDs.
func imageConfig(diffIDs []digest.Digest) ([]byte, error) {
	return imageConfigRun(diffIDs, benchRunConfig())
}

// imageConfigRun is imageConfig with the runtime configuration rc.
func imageConfigRun(diffIDs []digest.Digest, rc ocispec.ImageConfig) ([]byte, error) {
	return json.Marshal(ocispec.Image{
		Created:  &epoch,
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   rc,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	})
}

func writeTarFile(tw *tar.Writer, name string, b []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

// compressZstd writes src compressed with the zstd CLI at its default level,
// as `docker save | zstd` would, or with the options opts.
func compressZstd(src, dst string, opts ...string) error {
	out, err := exec.Command("zstd", append(append([]string{"-q", "-f", "-T0"}, opts...), src, "-o", dst)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("zstd %s: %w: %s", src, err, out)
	}
	return syncFile(dst)
}

// compressGzip writes src gzip-compressed at the default level, as
// `docker save | gzip` would.
func compressGzip(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	zw := gzip.NewWriter(out)
	if _, err := io.Copy(zw, in); err != nil {
		return fmt.Errorf("gzip %s: %w", src, err)
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// generateSmall writes the small archives of the many, restart and latency
// cases.
func (b *bench) generateSmall() error {
	in := &b.in
	w := b.work
	in.manyDir = filepath.Join(w, "many")
	in.restartDir = filepath.Join(w, "restart")
	latencyDir := filepath.Join(w, "latency")
	for _, d := range []string{in.manyDir, in.restartDir, latencyDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	for i := range b.cfg.many {
		p := filepath.Join(in.manyDir, fmt.Sprintf("many-%03d.tar", i))
		if err := writeDockerSave(p, archiveSpec{name: fmt.Sprintf("bench/many-%03d:1", i), seed: 1000 + uint64(i), layers: 1, size: b.cfg.manySize}); err != nil {
			return err
		}
		in.many = append(in.many, p)
		if i < b.cfg.restartFiles {
			if err := os.Link(p, filepath.Join(in.restartDir, filepath.Base(p))); err != nil {
				return err
			}
		}
	}
	for i := range b.cfg.latencyRounds {
		p := filepath.Join(latencyDir, fmt.Sprintf("latency-%02d.tar", i))
		if err := writeDockerSave(p, archiveSpec{name: latencyImage(i), seed: 5000 + uint64(i), layers: 1, size: b.cfg.manySize}); err != nil {
			return err
		}
		in.latency = append(in.latency, p)
	}
	return nil
}
