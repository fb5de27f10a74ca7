package importer_test

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/klauspost/compress/zstd"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

// noLeftovers asserts that the namespace holds no lease, ingest, active
// snapshot, image or content.
func (e *env) noLeftovers() {
	e.t.Helper()
	left, err := harness.Leftovers(context.Background(), e.client, e.ns, "overlayfs")
	if err != nil {
		e.t.Fatal(err)
	}
	if len(left) > 0 {
		e.t.Errorf("left behind: %v", left)
	}
	if got := e.imageNames(); len(got) != 0 {
		e.t.Errorf("images left behind: %v", got)
	}
	if got := e.blobs(); len(got) != 0 {
		e.t.Errorf("content left behind: %v", got)
	}
}

// writeZstdBomb writes a zstd-compressed tar to path whose one entry claims
// claimed bytes and holds zeros bytes of zeros, then ends: a decompression
// bomb made from a generator, only the compressed bytes on disk.
func writeZstdBomb(t *testing.T, path string, claimed, zeros int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "blobs/sha256/zero", Mode: 0o644, Size: claimed, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(zw, zeroReader{}, zeros); err != nil { // past tw: the entry stays short
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestImportDecompressionBomb(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	path := filepath.Join(e.dir, "bomb.tar.zst")
	// 64 GiB claimed, 1 GiB of zeros written: a few hundred KiB on disk.
	writeZstdBomb(t, path, 64<<30, 1<<30)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	im := e.importer(func(c *importer.Config) { c.MaxExpansion, c.MaxExpansionFloor = 100, 64<<20 })
	res, err := im.ImportArchive(context.Background(), path)
	if !errors.Is(err, importer.ErrExpansion) {
		t.Fatalf("ImportArchive = %v, want %v", err, importer.ErrExpansion)
	}
	if !importer.IsPermanent(err) || !containsAll(err.Error(), path, "--max-expansion 100", "--max-expansion-floor") {
		t.Errorf("error = %q (permanent %v), want a permanent one naming the file and the limit", err, importer.IsPermanent(err))
	}
	if res.BytesDecompressed < 64<<20 || res.BytesDecompressed >= 1<<30 || res.BytesRead > st.Size() {
		t.Errorf("decompressed %d bytes, read %d of %d: want past the 64 MiB limit, short of the 1 GiB", res.BytesDecompressed, res.BytesRead, st.Size())
	}
	e.noLeftovers()
}

func TestImportExpansionWithinLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Compresses far more than 100 times, but decompresses to less than the floor.
	img := harness.NewImage("example.com/zeros:1", node, map[string]string{"zeros": strings.Repeat("\x00", 8<<20)})
	path := e.write("zeros.tar.zst", mustCompress(t, harness.DockerSaveBytes(img), "zstd"))
	res, err := e.importer(func(c *importer.Config) { c.MaxExpansionFloor = 16 << 20 }).ImportArchive(context.Background(), path)
	if err != nil {
		t.Fatalf("ImportArchive: %v", err)
	}
	if res.BytesDecompressed <= 8<<20 {
		t.Errorf("bytes decompressed = %d, want more than the layer's 8 MiB", res.BytesDecompressed)
	}
	e.checkImage(img.Name, img, "zeros.tar.zst", true)
}

func TestImportFreeSpaceGuard(t *testing.T) {
	t.Parallel()
	root := filepath.Join(harness.RequireContainerd(t).Dir, "root")
	img := harness.NewImage("example.com/space:1", node, map[string]string{"f": "space"})
	for _, tt := range []struct {
		name    string
		minFree importer.MinFree
		wantErr bool
	}{
		{"floor above the free space", importer.MinFree{Bytes: 1 << 62}, true},
		{"default floor, room enough", importer.DefaultConfig().MinFreeSpace, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			path := e.write("space.tar.gz", mustCompress(t, harness.DockerSaveBytes(img), "gzip"))
			im := e.importer(func(c *importer.Config) { c.ContainerdRoot, c.MinFreeSpace = root, tt.minFree })
			_, err := im.ImportArchive(context.Background(), path)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("ImportArchive: %v", err)
				}
				e.checkImage(img.Name, img, "space.tar.gz", true)
				return
			}
			if !errors.Is(err, importer.ErrLowSpace) || importer.IsPermanent(err) {
				t.Fatalf("ImportArchive = %v, want a transient %v", err, importer.ErrLowSpace)
			}
			if !containsAll(err.Error(), path, root, "--min-free-space") {
				t.Errorf("error = %q, want it to name the file, the root and the flag", err)
			}
			e.noLeftovers()
		})
	}
}

// cancelOnRead cancels an import once it has read n bytes of its file.
type cancelOnRead struct {
	mu     sync.Mutex
	read   int64
	n      int64
	cancel context.CancelFunc
}

func (c *cancelOnRead) BytesRead(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.read += n; c.read >= c.n {
		c.cancel()
	}
}

func (*cancelOnRead) ImagesImported(int)                {}
func (*cancelOnRead) Retagged(string)                   {}
func (*cancelOnRead) ImagePulled(string, time.Duration) {}
func (*cancelOnRead) Refused(string)                    {}
func (*cancelOnRead) Verified(string, string)           {}

func TestImportCancelledCleansUp(t *testing.T) {
	t.Parallel()
	big := harness.RandomImage("example.com/cancel:1", node, 7, 3, 16<<20)
	for _, compression := range []string{"none", "zstd"} {
		t.Run(compression, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			path := e.write("cancel.tar", mustCompress(t, harness.DockerSaveBytes(big), compression))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := importer.DefaultConfig()
			cfg.Namespace = e.ns
			obs := &cancelOnRead{n: 20 << 20, cancel: cancel}
			im, err := importer.New(e.client, cfg, slog.New(slog.DiscardHandler), importer.WithObserver(obs))
			if err != nil {
				t.Fatal(err)
			}
			_, err = im.ImportArchive(ctx, path)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("ImportArchive = %v, want %v", err, context.Canceled)
			}
			e.noLeftovers()
		})
	}
}

func TestCleanupReleasesStaleLeases(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.ctx()
	ls := e.client.LeasesService()
	// What an earlier imagedrop, killed mid-import, left: its lease, an
	// upload in progress and an unpack's active snapshot held by it.
	stale, err := ls.Create(ctx, leases.WithRandomID(), leases.WithExpiration(time.Hour),
		leases.WithLabels(map[string]string{importer.LabelLease: "import", "imagedrop.io/instance": "earlier"}))
	if err != nil {
		t.Fatal(err)
	}
	e.leaseUpload(leases.WithLease(ctx, stale.ID), "tar-blobs/sha256/partial")
	if _, err := e.client.SnapshotService("overlayfs").Prepare(leases.WithLease(ctx, stale.ID), "extract-1-stale", ""); err != nil {
		t.Fatal(err)
	}
	// And a lease that is not imagedrop's, with an upload of its own.
	other, err := ls.Create(ctx, leases.WithRandomID(), leases.WithLabels(map[string]string{"owner": "someone-else"}))
	if err != nil {
		t.Fatal(err)
	}
	e.leaseUpload(leases.WithLease(ctx, other.ID), "other-upload")

	if err := e.importer().Cleanup(context.Background()); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	left, err := harness.Leftovers(context.Background(), e.client, e.ns, "overlayfs")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 || !strings.HasPrefix(left[0], "lease "+other.ID) || !strings.HasPrefix(left[1], "ingest other-upload") {
		t.Errorf("after Cleanup: %v, want only the other lease and its upload", left)
	}
	if err := e.client.ContentStore().Abort(ctx, "other-upload"); err != nil {
		t.Error(err)
	}
	if err := ls.Delete(ctx, other); err != nil {
		t.Error(err)
	}
}

// leaseUpload starts an upload under ref and leaves it unfinished.
func (e *env) leaseUpload(ctx context.Context, ref string) {
	e.t.Helper()
	w, err := e.client.ContentStore().Writer(ctx, content.WithRef(ref))
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := w.Write([]byte("partial")); err != nil {
		e.t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		e.t.Fatal(err)
	}
}
