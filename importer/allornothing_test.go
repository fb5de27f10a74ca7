package importer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

// ociBlob returns the blob d of the OCI layout tar data, decoded into v.
func ociBlob(t *testing.T, data []byte, d digest.Digest, v any) {
	t.Helper()
	for _, e := range tarEntries(t, data) {
		if e.hdr.Name == "blobs/sha256/"+d.Encoded() {
			if err := json.Unmarshal(e.data, v); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no blob %s in the archive", d)
}

// withoutBlob is the OCI layout tar data without the blob d.
func withoutBlob(t *testing.T, data []byte, d digest.Digest) []byte {
	t.Helper()
	return tarWithout(t, data, "blobs/sha256/"+d.Encoded())
}

// TestImportOCIIncomplete imports OCI layouts, plain and gzip, that lack
// the manifest, the config or a layer of an image, or a layer of one
// platform of a multi-platform image whose manifest is there: each is
// refused, names the missing blob, and neither creates an image nor
// replaces the complete one of the same name (an older version, whose
// content is not what the archive lacks: a blob the namespace holds
// already completes an image as well as the archive's own).
func TestImportOCIIncomplete(t *testing.T) {
	t.Parallel()
	img := harness.NewImage("example.com/oci/broken:1", node, map[string]string{"a": "a"}, map[string]string{"b": strings.Repeat("b", 5000)})
	single, ds := harness.OCILayoutBytes(harness.OCIImage(img))
	var mf ocispec.Manifest
	ociBlob(t, single, ds[0].Target, &mf)
	// An older version of the image, complete.
	old := harness.NewImage(img.Name, node, map[string]string{"a": "older"})
	older, _ := harness.OCILayoutBytes(harness.OCIImage(old))

	amd := harness.NewImage("example.com/oci/broken:1", "linux/amd64", map[string]string{"arch": "amd64"})
	arm := harness.NewImage("example.com/oci/broken:1", "linux/arm64", map[string]string{"arch": "arm64"})
	multi, mds := harness.OCILayoutBytes(harness.OCIEntry{
		Images:      []*harness.Image{amd, arm},
		Annotations: map[string]string{ocispec.AnnotationRefName: "example.com/oci/broken:1"},
	})
	var armMf ocispec.Manifest
	ociBlob(t, multi, mds[0].Manifests[1], &armMf)

	cases := []struct {
		name    string
		data    []byte
		missing digest.Digest
		want    string
	}{
		{"manifest", withoutBlob(t, single, ds[0].Target), ds[0].Target, "manifest"},
		{"config", withoutBlob(t, single, mf.Config.Digest), mf.Config.Digest, "config"},
		{"layer", withoutBlob(t, single, mf.Layers[1].Digest), mf.Layers[1].Digest, "layer"},
		{"layer of one platform", withoutBlob(t, multi, armMf.Layers[0].Digest), armMf.Layers[0].Digest, "linux/arm64"},
		{"config of one platform", withoutBlob(t, multi, armMf.Config.Digest), armMf.Config.Digest, "linux/arm64"},
	}
	for _, tt := range cases {
		for _, compression := range []string{"none", "gzip"} {
			t.Run(tt.name+"/"+compression, func(t *testing.T) {
				t.Parallel()
				data := mustCompress(t, tt.data, compression)
				file := "broken.tar"
				if compression == "gzip" {
					file += ".gz"
				}
				e := newEnv(t)
				e.refused(e.importer(), e.write(file, data), data, tt.missing.String())
				_, err := e.importer().ImportArchive(context.Background(), e.write(file, data))
				if err == nil || !strings.Contains(err.Error(), tt.want) || !importer.IsPermanent(err) {
					t.Errorf("error = %v, want a permanent error that says %q", err, tt.want)
				}

				// A complete image of that name is kept as it is.
				good := newEnv(t)
				if _, err := good.importer().ImportArchive(context.Background(), good.write("good.tar", older)); err != nil {
					t.Fatal(err)
				}
				before := good.image(img.Name)
				if _, err := good.importer().ImportArchive(context.Background(), good.write(file, data)); err == nil {
					t.Fatalf("ImportArchive %s succeeded over a complete image", file)
				}
				if after := good.image(img.Name); after.Target.Digest != before.Target.Digest || !after.UpdatedAt.Equal(before.UpdatedAt) {
					t.Errorf("image replaced: target %s (updated %v), want %s (updated %v)", after.Target.Digest, after.UpdatedAt, before.Target.Digest, before.UpdatedAt)
				}
				good.checkImage(img.Name, old, "good.tar", true)
			})
		}
	}
}

// TestImportDockerSaveDiffIDs imports docker saves whose config names diff
// IDs that are not those of its layers: refused whatever the compression
// of the archive, unpacking or not.
func TestImportDockerSaveDiffIDs(t *testing.T) {
	t.Parallel()
	for _, compression := range []string{"none", "gzip", "zstd"} {
		for _, unpack := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/unpack=%v", compression, unpack), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				img := harness.NewImage("example.com/liar:1", node, map[string]string{"x": e.ns}, map[string]string{"y": e.ns + "y"})
				lie := *img
				var cfg map[string]any
				if err := json.Unmarshal(img.Config, &cfg); err != nil {
					t.Fatal(err)
				}
				ids := cfg["rootfs"].(map[string]any)["diff_ids"].([]any)
				ids[1] = digest.FromString("another layer").String()
				lie.Config, _ = json.Marshal(cfg)
				data := mustCompress(t, harness.DockerSaveBytes(&lie), compression)
				e.refused(e.importer(func(c *importer.Config) { c.Unpack = unpack }), e.write("liar.tar", data), data, "diff ID")
			})
		}
	}
}

// TestImportJSONLimits imports archives one of whose JSON documents is
// larger than Config.MaxJSONSize: each is refused with an error that names
// the document and the limit.
func TestImportJSONLimits(t *testing.T) {
	t.Parallel()
	const limit = 8 << 10
	bigEnv := ocispec.ImageConfig{Env: []string{"BIG=" + strings.Repeat("x", 2*limit)}}
	bigConfig := harness.NewImageFromLayers("example.com/bigconfig:1", node, bigEnv, harness.Layer(harness.File{Name: "a", Data: []byte("a")}))
	var layers [][]byte
	for i := range 100 {
		layers = append(layers, harness.Layer(harness.File{Name: fmt.Sprint(i), Data: []byte(fmt.Sprint(i))}))
	}
	manyLayers := harness.NewImageFromLayers("example.com/manylayers:1", node, ocispec.ImageConfig{}, layers...)
	small := harness.NewImage("example.com/small:1", node, map[string]string{"s": "s"})
	paddedManifest := replaceEntry(t, harness.DockerSaveBytes(small), "manifest.json", func(b []byte) []byte {
		return append(b, bytes.Repeat([]byte(" "), 2*limit)...)
	})
	ociBigConfig, _ := harness.OCILayoutBytes(harness.OCIImage(bigConfig))
	ociManyLayers, _ := harness.OCILayoutBytes(harness.OCIImage(manyLayers))
	paddedIndex := replaceEntry(t, ociBigConfig, "index.json", func(b []byte) []byte {
		return append(b, bytes.Repeat([]byte(" "), 2*limit)...)
	})
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"manifest.json", paddedManifest, "manifest.json is larger than the 8KiB allowed (--max-json-size)"},
		{"docker config", harness.DockerSaveBytes(bigConfig), "is larger than the 8KiB allowed (--max-json-size)"},
		{"index.json", paddedIndex, "index.json is larger than the 8KiB allowed (--max-json-size)"},
		{"OCI config", ociBigConfig, "is larger than the 8KiB allowed (--max-json-size)"},
		{"OCI manifest", ociManyLayers, "is larger than the 8KiB allowed (--max-json-size)"},
	}
	for _, tt := range cases {
		for _, compression := range []string{"none", "gzip"} {
			t.Run(tt.name+"/"+compression, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				data := mustCompress(t, tt.data, compression)
				im := e.importer(func(c *importer.Config) { c.MaxJSONSize = limit })
				e.refused(im, e.write("big.tar", data), data, tt.want)
			})
		}
	}
}

// TestImportManyEntries imports archives of many empty entries, more than
// Config.MaxArchiveEntries: refused with an error that names the limit,
// the plain one before anything is written.
func TestImportManyEntries(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := range 200_000 {
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%d", i), Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	for _, compression := range []string{"none", "gzip"} {
		t.Run(compression, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			data := mustCompress(t, buf.Bytes(), compression)
			im := e.importer(func(c *importer.Config) { c.MaxArchiveEntries = 1000 })
			e.refused(im, e.write("many.tar", data), data, "more than 1000 entries (--max-archive-entries)")
		})
	}
}

// replaceEntry rewrites the tar data with the entry name's content edited.
func replaceEntry(t *testing.T, data []byte, name string, edit func([]byte) []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, e := range tarEntries(t, data) {
		if e.hdr.Name == name {
			e.data = edit(e.data)
			e.hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(e.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// leftovers lists what the namespace holds of an import, by containerd's
// own APIs: leases, ingests (content being written) and snapshots.
func (e *env) leftovers() []string {
	e.t.Helper()
	ctx := e.ctx()
	var out []string
	ls, err := e.client.LeasesService().List(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, l := range ls {
		out = append(out, "lease "+l.ID)
	}
	statuses, err := e.client.ContentStore().ListStatuses(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, s := range statuses {
		out = append(out, "ingest "+s.Ref)
	}
	err = e.client.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		out = append(out, "snapshot "+i.Name)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// TestImportErrorNamesPathOnce imports a directory named like an archive:
// the error names it once, with no word missing.
func TestImportErrorNamesPathOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	path := e.write("dir.tar", nil)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := e.importer().ImportArchive(context.Background(), path)
	if err == nil {
		t.Fatal("ImportArchive of a directory succeeded")
	}
	if n := strings.Count(err.Error(), path); n != 1 || strings.Contains(err.Error(), "  ") {
		t.Errorf("error = %q, want it to name %s once, without a word missing", err, path)
	}
}

// TestImportDockerSaveCompressedLayer imports a docker save whose layer is
// gzipped in the archive: its diff ID is checked on the layer decompressed,
// so the true one imports and a config that lies is refused.
func TestImportDockerSaveCompressedLayer(t *testing.T) {
	t.Parallel()
	for _, lie := range []bool{false, true} {
		t.Run(fmt.Sprintf("lie=%v", lie), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			img := harness.NewImage("example.com/gzlayer:1", node, map[string]string{"z": e.ns})
			if lie {
				img.Config = bytes.Replace(img.Config, []byte(img.DiffIDs()[0].String()), []byte(digest.FromString("other").String()), 1)
			}
			data := harness.DockerSaveBytes(img)
			layer, _ := largestEntry(t, data, "")
			data = replaceEntry(t, data, layer, func(b []byte) []byte { return mustCompress(t, b, "gzip") })
			im := e.importer(func(c *importer.Config) { c.Unpack = false })
			path := e.write("gz.tar", data)
			if lie {
				e.refused(im, path, data, "diff ID")
				return
			}
			if _, err := im.ImportArchive(context.Background(), path); err != nil {
				t.Fatalf("ImportArchive: %v", err)
			}
			e.checkContent(img.Name)
		})
	}
}

// TestImportDockerSaveLayerBomb: a compressed layer of a docker save whose
// diff ID is checked is decompressed within the expansion limit too, so a
// layer bomb inside an uncompressed archive is refused, not decompressed to
// the end.
func TestImportDockerSaveLayerBomb(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := harness.NewImage("example.com/layerbomb:1", node, map[string]string{"zeros": strings.Repeat("\x00", 8<<20)})
	data := harness.DockerSaveBytes(img)
	layer, _ := largestEntry(t, data, "")
	data = replaceEntry(t, data, layer, func(b []byte) []byte { return mustCompress(t, b, "gzip") })
	im := e.importer(func(c *importer.Config) { c.Unpack, c.MaxExpansion, c.MaxExpansionFloor = false, 2, 1<<20 })
	e.refused(im, e.write("bomb.tar", data), data, importer.ErrExpansion.Error())
}
