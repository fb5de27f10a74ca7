package importer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/imagedrop/imagedrop/e2e/harness"
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
	forged = corruptLargestBlob(t, forged)
	f := newEnv(t)
	_, err := f.importer().ImportArchive(context.Background(), f.write("forged.tar", forged))
	if err == nil {
		t.Fatal("ImportArchive of a blob whose content does not match its name succeeded")
	}
	if !strings.Contains(err.Error(), "digest") {
		t.Errorf("error = %q, want it to be about the digest", err)
	}
	if got := f.imageNames(); len(got) != 0 {
		t.Errorf("images left behind: %v", got)
	}
}

// corruptLargestBlob flips one byte of the largest blobs/ entry of a tar.
func corruptLargestBlob(t *testing.T, data []byte) []byte {
	t.Helper()
	largest, size := "", int64(-1)
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(h.Name, "blobs/") && h.Size > size {
			largest, size = h.Name, h.Size
		}
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr = tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == largest {
			b[len(b)/2] ^= 0xff
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
