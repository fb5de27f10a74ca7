package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// TestImportBrokenOCI runs `imagedrop import` on an OCI layout that lacks
// one layer: it fails the file, exits 1, names the missing blob, and
// leaves the complete image of that name as it was.
func TestImportBrokenOCI(t *testing.T) {
	c := harness.RequireContainerd(t)
	ns := harness.Namespace(t)
	dir := t.TempDir()
	name := "example.com/cli/broken:1"
	good := harness.NewImage(name, "linux/amd64", map[string]string{"v": "1"})
	next := harness.NewImage(name, "linux/amd64", map[string]string{"v": "2"}, map[string]string{"w": "2"})
	goodTar, _ := harness.OCILayoutBytes(harness.OCIImage(good))
	nextTar, _ := harness.OCILayoutBytes(harness.OCIImage(next))
	layer := "blobs/sha256/" + largestBlob(t, nextTar)
	broken, err := harness.FilterTar(nextTar, func(n string) bool { return n != layer })
	if err != nil {
		t.Fatal(err)
	}
	gz, err := harness.Compress(broken, "gzip")
	if err != nil {
		t.Fatal(err)
	}
	for n, b := range map[string][]byte{"good.tar": goodTar, "broken.tar.gz": gz} {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"IMAGEDROP_CONTAINERD_ADDRESS=" + c.Address, "IMAGEDROP_NAMESPACE=" + ns}
	if stdout, stderr, code := imagedrop(t, env, "import", filepath.Join(dir, "good.tar")); code != 0 {
		t.Fatalf("import good.tar: exit %d\n%s%s", code, stdout, stderr)
	}
	client := c.Client(t)
	ctx := namespaces.WithNamespace(context.Background(), ns)
	before, err := client.ImageService().Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code := imagedrop(t, env, "import", filepath.Join(dir, "broken.tar.gz"))
	digest := strings.TrimPrefix(layer, "blobs/sha256/")
	if code != 1 || !strings.HasPrefix(stdout, "FAIL ") || !strings.Contains(stdout, digest) || !strings.Contains(stdout, "not in the archive") {
		t.Errorf("exit %d, stdout %q; want 1 and a FAIL line naming layer %s\nstderr:\n%s", code, stdout, digest, stderr)
	}
	after, err := client.ImageService().Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if after.Target.Digest != before.Target.Digest {
		t.Errorf("image %s now points at %s, want %s as before", name, after.Target.Digest, before.Target.Digest)
	}
	ls, err := client.LeasesService().List(ctx)
	if err != nil || len(ls) != 0 {
		t.Errorf("leases left: %v (err %v)", ls, err)
	}
}

// largestBlob is the hex digest of the largest blob of an OCI layout tar.
func largestBlob(t *testing.T, data []byte) string {
	t.Helper()
	var largest string
	var size int64 = -1
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if rest, ok := strings.CutPrefix(h.Name, ocispec.ImageBlobsDir+"/sha256/"); ok && h.Size > size {
			largest, size = rest, h.Size
		}
	}
	return largest
}

// maxRSS bounds the peak resident memory of `imagedrop import` on a hostile
// archive (the DaemonSet's limit is 512Mi). About half of it is the binary
// at rest: `imagedrop version` peaks at 35–39 MiB, 4–7.5 MiB of it the
// initialisation of sigstore-go's packages (README, Verified imports); the
// imports measured 64–69 MiB with them, 60–64 MiB before.
const maxRSS = 72 << 20

// TestImportManyEntriesMemory runs the release binary (`make build`) under
// /usr/bin/time on an uncompressed tar of 200,000 empty entries, twice the
// default --max-archive-entries: it is refused, naming the limit, with a
// peak RSS under maxRSS.
func TestImportManyEntriesMemory(t *testing.T) {
	c := harness.RequireContainerd(t)
	path := filepath.Join(t.TempDir(), "many.tar")
	writeManyEntries(t, path, 200_000)

	env := []string{"IMAGEDROP_CONTAINERD_ADDRESS=" + c.Address, "IMAGEDROP_NAMESPACE=" + harness.Namespace(t)}
	out, code, kib := peakRSS(t, env, "import", path)
	if code != 1 || !strings.Contains(out, "more than 100000 entries (--max-archive-entries)") {
		t.Errorf("exit %d, stdout %q; want 1 and the entry limit named", code, out)
	}
	if kib<<10 > maxRSS {
		t.Errorf("peak RSS = %d KiB, want at most %d KiB", kib, maxRSS>>10)
	}
	t.Logf("peak RSS %d KiB", kib)
}

// writeManyEntries writes a tar of n empty regular files to path.
func writeManyEntries(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	tw := tar.NewWriter(bw)
	for i := range n {
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%d", i), Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}
