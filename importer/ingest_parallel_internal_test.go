package importer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// TestImportIndexAtRefusesSparse checks that the parallel path gives up,
// before writing anything, on an archive with GNU sparse entries, whose data
// is not one section of the file; ImportArchive then reads it as a stream
// (TestImportSparseMarkerFallsBack).
func TestImportIndexAtRefusesSparse(t *testing.T) {
	img := harness.NewImage("example.com/sparse:1", "linux/amd64", map[string]string{"a": "a"})
	data, err := harness.WithPAXRecord(harness.DockerSaveBytes(img), func(name string) bool {
		return strings.HasSuffix(name, "/layer.tar")
	}, "GNU.sparse.name", "layer.tar")
	if err != nil {
		t.Fatal(err)
	}
	count := func(r *io.SectionReader) io.Reader { return r }
	// No content store: any write would panic.
	_, err = ingester{maxJSON: defaultMaxJSONSize, maxEntries: defaultMaxArchiveEntries}.importIndexAt(context.Background(), bytes.NewReader(data), int64(len(data)), count)
	if !errors.Is(err, errSparse) {
		t.Fatalf("importIndexAt = %v, want errSparse", err)
	}
}
