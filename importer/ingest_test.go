package importer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

// TestImportOCIBlobsPresent re-imports an OCI layout whose blobs the
// namespace already holds (they are skipped, not written again) and checks
// that the image is whole; and that a blob named by a digest its content
// does not have is refused when it is not already present.
func TestImportOCIBlobsPresent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := harness.NewImage("example.com/again:1", node, map[string]string{"big": strings.Repeat("layer data ", 40000)})
	data, _ := harness.OCILayoutBytes(harness.OCIImage(img))

	for _, name := range []string{"first.tar", "again.tar"} {
		if _, err := e.importer().ImportArchive(context.Background(), e.write(name, data)); err != nil {
			t.Fatalf("ImportArchive %s: %v", name, err)
		}
		e.checkImage("example.com/again:1", img, name, true)
	}

	other := harness.NewImage("example.com/forged:1", node, map[string]string{"f": strings.Repeat("x", 5000)})
	forged, _ := harness.OCILayoutBytes(harness.OCIImage(other))
	forged = corruptLargest(t, forged, "blobs/")
	// A blob whose content does not match its name.
	f := newEnv(t)
	f.refused(f.importer(), f.write("forged.tar", forged), forged, "digest")
}

// TestImportDockerSaveLayersPresent re-imports the layers of a classic
// docker save (named <id>/layer.tar, not by digest) under a new image name:
// their digests are known from the config's diff IDs, so layers containerd
// holds are not read again. The proof: a copy whose largest layer is
// damaged imports whole where the layer is present, in the namespace or in
// another (containerd shares content between them), and fails where not.
func TestImportDockerSaveLayersPresent(t *testing.T) {
	t.Parallel()
	layers := []map[string]string{
		{"etc/os-release": "ID=test"},
		{"big": strings.Repeat("layer data ", 40000)},
	}
	first := harness.NewImage("example.com/first:1", node, layers...)
	again := harness.NewImage("example.com/again:1", node, layers...)
	damaged := corruptLargest(t, harness.DockerSaveBytes(again), "")

	e := newEnv(t)
	if _, err := e.importer().ImportArchive(context.Background(), e.write("first.tar", harness.DockerSaveBytes(first))); err != nil {
		t.Fatalf("ImportArchive first.tar: %v", err)
	}
	if _, err := e.importer().ImportArchive(context.Background(), e.write("again.tar", damaged)); err != nil {
		t.Fatalf("ImportArchive of the same layers, present: %v", err)
	}
	e.checkImage("example.com/again:1", again, "again.tar", true)

	other := newEnv(t)
	if _, err := other.importer().ImportArchive(context.Background(), other.write("again.tar", damaged)); err != nil {
		t.Fatalf("ImportArchive of layers another namespace holds: %v", err)
	}
	other.checkImage("example.com/again:1", again, "again.tar", true)

	// A layer whose content does not match its config's diff ID, and that
	// no namespace holds.
	unique := harness.NewImage("example.com/unique:1", node, map[string]string{"big": strings.Repeat(t.Name()+time.Now().String(), 10000)})
	forged := corruptLargest(t, harness.DockerSaveBytes(unique), "")
	f := newEnv(t)
	f.refused(f.importer(), f.write("forged.tar", forged), forged, "digest")
}

// corruptLargest flips one byte of the largest entry of a tar whose name
// starts with prefix.
func corruptLargest(t *testing.T, data []byte, prefix string) []byte {
	t.Helper()
	largest, _ := largestEntry(t, data, prefix)
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, e := range tarEntries(t, data) {
		if e.hdr.Name == largest {
			e.data[len(e.data)/2] ^= 0xff
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

// largestEntry returns the name and size of the largest entry of the tar
// data whose name starts with prefix.
func largestEntry(t *testing.T, data []byte, prefix string) (string, int64) {
	t.Helper()
	largest, size := "", int64(-1)
	for _, e := range tarEntries(t, data) {
		if strings.HasPrefix(e.hdr.Name, prefix) && e.hdr.Size > size {
			largest, size = e.hdr.Name, e.hdr.Size
		}
	}
	if largest == "" {
		t.Fatalf("no entry named %s… in the archive", prefix)
	}
	return largest, size
}

type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

// tarEntries reads every entry of the tar data.
func tarEntries(t *testing.T, data []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{h, b})
	}
}

// TestImportAfterInterruptedIngest leaves the ingest of an archive's
// largest blob (several chunks long) as an import killed mid-blob does, and
// imports the archive again: the blob is written anew, plain and
// compressed. And where another namespace holds the blob already (content
// is shared between namespaces), it is committed without being written.
func TestImportAfterInterruptedIngest(t *testing.T) {
	t.Parallel()
	// leftOver writes n bytes that are not the blob's under ref, uncommitted.
	leftOver := func(t *testing.T, e *env, ref string, n int64) {
		t.Helper()
		ctx := e.ctx()
		cs := e.client.ContentStore()
		w, err := content.OpenWriter(ctx, cs, content.WithRef(ref))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(bytes.Repeat([]byte("x"), int(n))); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if st, err := cs.Status(ctx, ref); err != nil || st.Offset != n {
			t.Fatalf("left-over ingest: %+v, %v", st, err)
		}
	}
	// imported imports data and checks the image and that the ingest is gone.
	imported := func(t *testing.T, e *env, img *harness.Image, data []byte, ref string) {
		t.Helper()
		if _, err := e.importer().ImportArchive(context.Background(), e.write("again.tar", data)); err != nil {
			t.Fatalf("ImportArchive: %v", err)
		}
		e.checkImage(img.Name, img, "again.tar", true)
		e.checkContent(img.Name)
		if _, err := e.client.ContentStore().Status(e.ctx(), ref); !errdefs.IsNotFound(err) {
			t.Errorf("ingest %s after the import: %v, want it committed and gone", ref, err)
		}
	}
	// newArchive is an OCI layout of an image of its own (seeded by the
	// clock, so that no namespace of an earlier -count run shares it).
	newArchive := func(t *testing.T) (*harness.Image, []byte, string, int64) {
		img := harness.RandomImage("example.com/again:1", node, uint64(time.Now().UnixNano()), 1, 13<<20+777)
		data, _ := harness.OCILayoutBytes(harness.OCIImage(img))
		layer, size := largestEntry(t, data, "blobs/")
		if size <= 4<<20 {
			t.Fatalf("layer of %d bytes fits one chunk", size)
		}
		return img, data, "tar-" + layer, size
	}

	for _, compression := range []string{"none", "zstd"} {
		t.Run(compression, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			img, data, ref, _ := newArchive(t)
			leftOver(t, e, ref, 1_000_000)
			imported(t, e, img, mustCompress(t, data, compression), ref)
		})
	}
	// As many bytes as the blob, but not its: the commit fails, and the
	// ingest is dropped and written anew.
	t.Run("whole-but-wrong", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		img, data, ref, size := newArchive(t)
		leftOver(t, e, ref, size)
		imported(t, e, img, data, ref)
	})
	t.Run("shared", func(t *testing.T) {
		t.Parallel()
		img, data, ref, _ := newArchive(t)
		first := newEnv(t)
		imported(t, first, img, data, ref)
		e := newEnv(t)
		leftOver(t, e, ref, 1_000_000)
		imported(t, e, img, data, ref)
	})
}

// TestImportSameBlobsAtOnce imports copies of one archive at the same time
// into one namespace: their writes of the same blobs meet on containerd's
// lock of each ingest, and every import must wait for it, not fail.
func TestImportSameBlobsAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := harness.RandomImage("example.com/atonce:1", node, uint64(time.Now().UnixNano()), 2, 9<<20)
	data, _ := harness.OCILayoutBytes(harness.OCIImage(img))
	im := e.importer()
	errs := make(chan error, 4)
	for i := range cap(errs) {
		path := e.write(fmt.Sprintf("copy-%d.tar.gz", i), mustCompress(t, data, "gzip"))
		go func() {
			_, err := im.ImportArchive(context.Background(), path)
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("ImportArchive: %v", err)
		}
	}
	src := e.image("example.com/atonce:1").Labels[importer.LabelSource]
	if !strings.HasPrefix(src, "copy-") {
		t.Errorf("source label %q, want one of the copies", src)
	}
	e.checkImage("example.com/atonce:1", img, src, true)
	e.checkContent("example.com/atonce:1")
}

// TestImportRightAfterDeletion deletes an image and at once imports its
// archive again, many times: the blobs containerd still has, about to be
// garbage collected, must be held by the new import, not lost under it.
func TestImportRightAfterDeletion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := harness.NewImage("example.com/again:1", node, map[string]string{"a": strings.Repeat("a", 50000)}, map[string]string{"b": "b"})
	oci, _ := harness.OCILayoutBytes(harness.OCIImage(img))
	files := []string{e.write("save.tar", harness.DockerSaveBytes(img)), e.write("oci.tar", oci)}
	im := e.importer(func(c *importer.Config) { c.Unpack = false })
	for round := range 15 {
		for _, f := range files {
			if _, err := im.ImportArchive(context.Background(), f); err != nil {
				t.Fatalf("round %d: ImportArchive %s: %v", round, f, err)
			}
			e.checkContent("example.com/again:1")
			if err := e.client.ImageService().Delete(e.ctx(), "example.com/again:1"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestImportSparseMarkerFallsBack imports an archive whose layer entry
// carries a GNU sparse PAX record: the parallel path refuses it and the
// stream path, which tar reads as it should, imports it whole.
func TestImportSparseMarkerFallsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := harness.NewImage("example.com/sparse:1", node, map[string]string{"a": strings.Repeat("a", 3000)})
	data, err := harness.WithPAXRecord(harness.DockerSaveBytes(img), func(name string) bool {
		return strings.HasSuffix(name, "/layer.tar")
	}, "GNU.sparse.name", "layer.tar")
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.importer().ImportArchive(context.Background(), e.write("sparse.tar", data))
	if err != nil {
		t.Fatalf("ImportArchive: %v", err)
	}
	if res.BytesRead != int64(len(data)) {
		t.Errorf("bytes read = %d, want %d", res.BytesRead, len(data))
	}
	e.checkImage("example.com/sparse:1", img, "sparse.tar", true)
}
