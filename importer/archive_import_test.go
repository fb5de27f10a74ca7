package importer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

// env is one test's view of the shared containerd: its own namespace.
type env struct {
	t      *testing.T
	client *containerd.Client
	ns     string
	dir    string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := harness.RequireContainerd(t)
	return &env{t: t, client: c.Client(t), ns: harness.Namespace(t), dir: t.TempDir()}
}

func (e *env) ctx() context.Context {
	return namespaces.WithNamespace(context.Background(), e.ns)
}

func (e *env) importer(mutate ...func(*importer.Config)) *importer.Importer {
	e.t.Helper()
	cfg := importer.DefaultConfig()
	cfg.Namespace = e.ns
	for _, m := range mutate {
		m(&cfg)
	}
	im, err := importer.New(e.client, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		e.t.Fatalf("importer.New: %v", err)
	}
	return im
}

func (e *env) write(name string, data []byte) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) image(name string) images.Image {
	e.t.Helper()
	img, err := e.client.ImageService().Get(e.ctx(), name)
	if err != nil {
		e.t.Fatalf("get image %s: %v", name, err)
	}
	return img
}

func (e *env) imageNames() []string {
	e.t.Helper()
	imgs, err := e.client.ImageService().List(e.ctx())
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, i := range imgs {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	return names
}

// checkImage asserts that name holds want's config and layers for the
// node's platform, carries imagedrop's labels and is unpacked.
func (e *env) checkImage(name string, want *harness.Image, source string, unpacked bool) {
	e.t.Helper()
	ctx := e.ctx()
	meta := e.image(name)
	img := containerd.NewImageWithPlatform(e.client, meta, platforms.Only(want.Platform))
	cfg, err := img.Config(ctx)
	if err != nil {
		e.t.Fatalf("%s: config: %v", name, err)
	}
	if cfg.Digest != want.ConfigDigest() {
		e.t.Errorf("%s: config digest = %s, want %s", name, cfg.Digest, want.ConfigDigest())
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		e.t.Fatalf("%s: rootfs: %v", name, err)
	}
	if !slices.Equal(diffIDs, want.DiffIDs()) {
		e.t.Errorf("%s: diff IDs = %v, want %v", name, diffIDs, want.DiffIDs())
	}
	if got := meta.Labels[importer.LabelPinned]; got != importer.LabelPinnedValue {
		e.t.Errorf("%s: label %s = %q, want %q", name, importer.LabelPinned, got, importer.LabelPinnedValue)
	}
	if got := meta.Labels[importer.LabelSource]; got != source {
		e.t.Errorf("%s: label %s = %q, want %q", name, importer.LabelSource, got, source)
	}
	isUnpacked, err := img.IsUnpacked(ctx, "overlayfs")
	if err != nil {
		e.t.Fatalf("%s: IsUnpacked: %v", name, err)
	}
	if isUnpacked != unpacked {
		e.t.Errorf("%s: unpacked = %v, want %v", name, isUnpacked, unpacked)
	}
}

// checkContent asserts that every blob of image name is in the content
// store, every platform included.
func (e *env) checkContent(name string) {
	e.t.Helper()
	cs := e.client.ContentStore()
	walk := images.HandlerFunc(func(ctx context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if _, err := cs.Info(ctx, d.Digest); err != nil {
			return nil, err
		}
		return images.Children(ctx, cs, d)
	})
	if err := images.Walk(e.ctx(), walk, e.image(name).Target); err != nil {
		e.t.Errorf("%s: content missing: %v", name, err)
	}
}

// blobs lists the digests in the namespace's content store.
func (e *env) blobs() []digest.Digest {
	e.t.Helper()
	var out []digest.Digest
	err := e.client.ContentStore().Walk(e.ctx(), func(i content.Info) error {
		out = append(out, i.Digest)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

const node = "linux/amd64"

func TestImportFormats(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file        string
		compression string
		want        importer.Compression
	}{
		{"plain.tar", "none", importer.CompressionNone},
		{"gz.tar.gz", "gzip", importer.CompressionGzip},
		{"gz.tgz", "gzip", importer.CompressionGzip},
		{"zstd.tar.zst", "zstd", importer.CompressionZstd},
		{"zstd.tzst", "zstd", importer.CompressionZstd},
		{"lz4.tar.lz4", "lz4", importer.CompressionLZ4},
		{"bzip2.tar.bz2", "bzip2", importer.CompressionBzip2},
		{"bzip2.tbz", "bzip2", importer.CompressionBzip2},
		{"UPPER.TAR.GZ", "gzip", importer.CompressionGzip},
		{"misnamed-zstd.tar.gz", "zstd", importer.CompressionZstd},
		{"misnamed-plain.tar.lz4", "none", importer.CompressionNone},
		{"long27.tar.zst", "zstd-long27", importer.CompressionZstd},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			want := harness.NewImage("example.com/formats/"+strings.ToLower(strings.ReplaceAll(tt.file, ".", "-"))+":v1", node,
				map[string]string{"etc/hello": "hello " + tt.file},
				map[string]string{"bin/app": strings.Repeat("x", 100000)})
			plain := harness.DockerSaveBytes(want)
			data, err := harness.Compress(plain, tt.compression)
			if err != nil {
				t.Fatal(err)
			}
			path := e.write(tt.file, data)

			res, err := e.importer().ImportArchive(context.Background(), path)
			if err != nil {
				t.Fatalf("ImportArchive: %v", err)
			}
			if res.Compression != tt.want {
				t.Errorf("compression = %s, want %s", res.Compression, tt.want)
			}
			if res.BytesRead != int64(len(data)) {
				t.Errorf("bytes read = %d, want %d", res.BytesRead, len(data))
			}
			if res.BytesDecompressed != int64(len(plain)) {
				t.Errorf("bytes decompressed = %d, want %d", res.BytesDecompressed, len(plain))
			}
			if !slices.Equal(res.Images, []string{want.Name}) {
				t.Errorf("images = %v, want [%s]", res.Images, want.Name)
			}
			if res.Unpacked != 1 {
				t.Errorf("unpacked = %d, want 1", res.Unpacked)
			}
			e.checkImage(want.Name, want, tt.file, true)
		})
	}
}

func TestImportDockerSaveMultiImage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := map[string]string{"etc/os-release": "ID=test"}
	a := harness.NewImage("busybox:1.36", node, base, map[string]string{"a": "a"})
	b := harness.NewImage("registry.example.com/team/app:2", node, base, map[string]string{"b": "b"})
	path := e.write("bundle.tar", harness.DockerSaveBytes(a, b))

	res, err := e.importer().ImportArchive(context.Background(), path)
	if err != nil {
		t.Fatalf("ImportArchive: %v", err)
	}
	wantNames := []string{"docker.io/library/busybox:1.36", "registry.example.com/team/app:2"}
	if !slices.Equal(res.Images, wantNames) {
		t.Errorf("images = %v, want %v", res.Images, wantNames)
	}
	if got := e.imageNames(); !slices.Equal(got, wantNames) {
		t.Errorf("containerd images = %v, want %v", got, wantNames)
	}
	e.checkImage(wantNames[0], a, "bundle.tar", true)
	e.checkImage(wantNames[1], b, "bundle.tar", true)
}

func TestImportOCIMultiPlatform(t *testing.T) {
	t.Parallel()
	amd := harness.NewImage("docker.io/library/multi:1", "linux/amd64", map[string]string{"arch": "amd64"})
	arm := harness.NewImage("docker.io/library/multi:1", "linux/arm64", map[string]string{"arch": "arm64"})
	for _, tt := range []struct {
		name        string
		omit        []string
		wantSkipped int
	}{
		{"all-platforms", nil, 0},
		{"arm64-blobs-absent", []string{"linux/arm64"}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			entry := harness.OCIEntry{
				Images:      []*harness.Image{amd, arm},
				Annotations: map[string]string{ocispec.AnnotationRefName: "multi:1"},
				Omit:        tt.omit,
			}
			data, ds := harness.OCILayoutBytes(entry)
			path := e.write("multi.tar.zst", mustCompress(t, data, "zstd"))

			res, err := e.importer().ImportArchive(context.Background(), path)
			if err != nil {
				t.Fatalf("ImportArchive: %v", err)
			}
			if res.SkippedPlatforms != tt.wantSkipped {
				t.Errorf("skipped platforms = %d, want %d", res.SkippedPlatforms, tt.wantSkipped)
			}
			meta := e.image("docker.io/library/multi:1")
			if meta.Target.Digest != ds[0].Target {
				t.Errorf("target = %s, want index %s", meta.Target.Digest, ds[0].Target)
			}
			e.checkImage("docker.io/library/multi:1", amd, "multi.tar.zst", true)
			// The other platform is imported too, unless its blobs were left out.
			_, err = e.client.ContentStore().Info(e.ctx(), ds[0].Manifests[1])
			if present := err == nil; present != (tt.omit == nil) {
				t.Errorf("arm64 manifest present = %v (err %v), want %v", present, err, tt.omit == nil)
			}
		})
	}
}

func TestImportOCINames(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	full := harness.NewImage("quay.io/org/full:3", node, map[string]string{"f": "1"})
	ctrName := harness.NewImage("ctr", node, map[string]string{"f": "2"})
	bareTag := harness.NewImage("bare", node, map[string]string{"f": "3"})
	data, ds := harness.OCILayoutBytes(
		harness.OCIImage(full),
		harness.OCIEntry{Images: []*harness.Image{ctrName}, Annotations: map[string]string{
			images.AnnotationImageName: "docker.io/library/ctr:latest", ocispec.AnnotationRefName: "latest"}},
		harness.OCIEntry{Images: []*harness.Image{bareTag}, Annotations: map[string]string{ocispec.AnnotationRefName: "v1"}},
	)
	path := e.write("names.tar", data)
	res, err := e.importer().ImportArchive(context.Background(), path)
	if err != nil {
		t.Fatalf("ImportArchive: %v", err)
	}
	want := []string{"docker.io/library/ctr:latest", "quay.io/org/full:3"}
	if !slices.Equal(res.Images, want) {
		t.Errorf("images = %v, want %v (a bare tag names no repository)", res.Images, want)
	}
	if got := e.image("quay.io/org/full:3").Target.Digest; got != ds[0].Target {
		t.Errorf("manifest digest = %s, want the archive's %s", got, ds[0].Target)
	}
}

func TestImportRetagAndSourceLabels(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := harness.NewImage("busybox:1.36", node, map[string]string{"bin/busybox": "bb"})
	old := harness.NewImage("registry.local:5000/library/busybox:1.36", node, map[string]string{"old": "old"})
	im := e.importer(func(c *importer.Config) {
		c.ExtraRegistries = []string{"registry.local:5000", "docker.io", "registry.local:5000", "mirror.example.com/cache"}
	})
	// An older image already has the retag's name: it must be replaced.
	if _, err := e.importer().ImportArchive(context.Background(), e.write("old.tar", harness.DockerSaveBytes(old))); err != nil {
		t.Fatal(err)
	}

	res, err := im.ImportArchive(context.Background(), e.write("busybox.tar.gz", mustCompress(t, harness.DockerSaveBytes(img), "gzip")))
	if err != nil {
		t.Fatalf("ImportArchive: %v", err)
	}
	want := []string{
		"docker.io/library/busybox:1.36",
		"mirror.example.com/cache/library/busybox:1.36",
		"registry.local:5000/library/busybox:1.36",
	}
	if !slices.Equal(res.Images, want) {
		t.Errorf("images = %v, want %v", res.Images, want)
	}
	original := e.image(want[0])
	for _, n := range want {
		e.checkImage(n, img, "busybox.tar.gz", true)
		if got := e.image(n).Target.Digest; got != original.Target.Digest {
			t.Errorf("%s target = %s, want %s", n, got, original.Target.Digest)
		}
	}

	// Every blob carries the distribution source of each name, as a pull sets it.
	mf, err := images.Manifest(e.ctx(), e.client.ContentStore(), original.Target, platforms.Only(img.Platform))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]ocispec.Descriptor{original.Target, mf.Config}, mf.Layers...) {
		info, err := e.client.ContentStore().Info(e.ctx(), d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		for key, repo := range map[string]string{
			"containerd.io/distribution.source.docker.io":          "library/busybox",
			"containerd.io/distribution.source.registry.local":     "library/busybox", // no port, as containerd
			"containerd.io/distribution.source.mirror.example.com": "cache/library/busybox",
		} {
			if !slices.Contains(strings.Split(info.Labels[key], ","), repo) {
				t.Errorf("blob %s (%s): label %s = %q, want it to include %q", d.Digest, d.MediaType, key, info.Labels[key], repo)
			}
		}
	}
}

func TestImportNoPinNoUnpack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := harness.NewImage("example.com/nopin:1", node, map[string]string{"x": "y"})
	im := e.importer(func(c *importer.Config) { c.Pin = false; c.Unpack = false })
	res, err := im.ImportArchive(context.Background(), e.write("nopin.tar", harness.DockerSaveBytes(img)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Unpacked != 0 {
		t.Errorf("unpacked = %d, want 0", res.Unpacked)
	}
	meta := e.image(img.Name)
	if _, ok := meta.Labels[importer.LabelPinned]; ok {
		t.Errorf("image is pinned with --pin=false: %v", meta.Labels)
	}
	ok, err := containerd.NewImage(e.client, meta).IsUnpacked(e.ctx(), "overlayfs")
	if err != nil || ok {
		t.Errorf("IsUnpacked = %v, %v; want false", ok, err)
	}
}

func TestImportBadInput(t *testing.T) {
	t.Parallel()
	good := harness.NewImage("example.com/good:1", node, map[string]string{"big": strings.Repeat("data", 50000)})
	plain := harness.DockerSaveBytes(good)
	gz := mustCompress(t, plain, "gzip")
	random := make([]byte, 4096)
	_, _ = rand.Read(random)
	noManifest := harness.DockerSaveBytes(good)
	// A tar that holds files but no manifest: cut the archive before manifest.json.
	noManifest = tarWithout(t, noManifest, "manifest.json")

	tests := []struct {
		name    string
		file    string
		data    []byte
		mutate  func(*importer.Config)
		wantErr string
	}{
		{"empty", "empty.tar", nil, nil, "file is empty"},
		{"random bytes", "random.tar.gz", random, nil, "not a tar archive"},
		{"text file", "notes.tar", []byte("hello, this is not an archive\n"), nil, "not a tar archive"},
		{"truncated tar", "truncated.tar", plain[:len(plain)/2], nil, "uncompressed archive is truncated"},
		{"truncated gzip", "truncated.tar.gz", gz[:len(gz)*2/3], nil, "gzip archive is truncated"},
		{"gzip trailer cut", "trailer.tar.gz", gz[:len(gz)-4], nil, "truncated"},
		{"tar without manifest", "nomanifest.tar", noManifest, nil, "no manifest.json"},
		{"zstd window over the cap", "long.tar.zst", mustCompress(t, plain, "zstd-long27"),
			func(c *importer.Config) { c.ZstdMaxWindow = 32 << 20 }, "zstd window larger than the 32 MiB allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			path := e.write(tt.file, tt.data)
			var mutate []func(*importer.Config)
			if tt.mutate != nil {
				mutate = append(mutate, tt.mutate)
			}
			e.refused(e.importer(mutate...), path, tt.data, tt.wantErr)
		})
	}
}

// refused asserts that importing the file at path, which holds data, fails
// with a permanent error that names it and says want, and leaves nothing
// behind: no image, no content, no lease, ingest or snapshot, the file
// unchanged.
func (e *env) refused(im *importer.Importer, path string, data []byte, want string) {
	e.t.Helper()
	_, err := im.ImportArchive(context.Background(), path)
	if err == nil {
		e.t.Fatalf("ImportArchive %s succeeded, want an error saying %q", path, want)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), want) {
		e.t.Errorf("error = %q, want it to name %s and say %q", err, path, want)
	}
	if !importer.IsPermanent(err) {
		e.t.Errorf("error = %q is not permanent; the file is bad", err)
	}
	if got := e.imageNames(); len(got) != 0 {
		e.t.Errorf("images left behind: %v", got)
	}
	if got := e.blobs(); len(got) != 0 {
		e.t.Errorf("content left behind: %v", got)
	}
	if got := e.leftovers(); len(got) != 0 {
		e.t.Errorf("left behind: %v", got)
	}
	// The file itself is never touched.
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, data) {
		e.t.Errorf("file changed: %d bytes, err %v", len(b), err)
	}
}

func TestExistAndUnpin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := harness.NewImage("example.com/pin:1", node, map[string]string{"p": "1"})
	im := e.importer()
	if _, err := im.ImportArchive(context.Background(), e.write("pin.tar", harness.DockerSaveBytes(img))); err != nil {
		t.Fatal(err)
	}
	ok, err := im.Exist(context.Background(), []string{img.Name})
	if err != nil || !ok {
		t.Fatalf("Exist = %v, %v; want true", ok, err)
	}
	ok, err = im.Exist(context.Background(), []string{img.Name, "example.com/absent:1"})
	if err != nil || ok {
		t.Fatalf("Exist with a missing image = %v, %v; want false", ok, err)
	}
	if err := im.Unpin(context.Background(), []string{img.Name, "example.com/absent:1"}); err != nil {
		t.Fatalf("Unpin: %v", err)
	}
	meta := e.image(img.Name)
	if _, pinned := meta.Labels[importer.LabelPinned]; pinned {
		t.Errorf("still pinned: %v", meta.Labels)
	}
	if meta.Labels[importer.LabelSource] != "pin.tar" {
		t.Errorf("unpin dropped other labels: %v", meta.Labels)
	}
}

func mustCompress(t *testing.T, data []byte, kind string) []byte {
	t.Helper()
	out, err := harness.Compress(data, kind)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tarWithout rewrites a tar without the named entry.
func tarWithout(t *testing.T, data []byte, name string) []byte {
	t.Helper()
	out, err := harness.FilterTar(data, func(n string) bool { return n != name })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// lockedBuffer is a log destination safe for the progress goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestImportLogsProgress(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	big := harness.RandomImage("example.com/progress:1", node, 3, 1, 32<<20)
	path := e.write("big.tar", harness.DockerSaveBytes(big))
	var logs lockedBuffer
	cfg := importer.DefaultConfig()
	cfg.Namespace = e.ns
	cfg.ProgressInterval = time.Millisecond // 10s in production
	im, err := importer.New(e.client, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.ImportArchive(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !containsAll(out, "msg=import_progress", "path="+path, "bytes_read=", "rate_mib_per_second=", "bytes_decompressed=", "decompressed_mib_per_second=") {
		t.Errorf("no progress line in the logs:\n%s", out)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// TestDistributionSourceLabelBounded imports 150 repositories whose images
// share their blobs, more than containerd's 4096-byte bound on a label lets
// the blobs' distribution-source label name: every image is imported, and
// the label keeps the repositories that fit.
func TestDistributionSourceLabelBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var imgs []*harness.Image
	for i := range 150 {
		imgs = append(imgs, harness.NewImage(fmt.Sprintf("example.com/a-rather-long-repository-name-%03d:1", i), node, map[string]string{"shared": "1"}))
	}
	path := e.write("shared.tar", harness.DockerSaveBytes(imgs...))
	res, err := e.importer().ImportArchive(e.ctx(), path)
	if err != nil {
		t.Fatalf("ImportArchive: %v", err)
	}
	if len(res.Images) != len(imgs) {
		t.Errorf("imported %d images, want %d", len(res.Images), len(imgs))
	}
	img, err := e.client.ImageService().Get(e.ctx(), imgs[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := e.client.ContentStore().Info(e.ctx(), img.Target.Digest)
	if err != nil {
		t.Fatal(err)
	}
	key := "containerd.io/distribution.source.example.com"
	if v := info.Labels[key]; len(key)+len(v) > 4096 || !strings.Contains(v, "a-rather-long-repository-name-000") {
		t.Errorf("label %s is %d bytes and names %q…; want at most 4096 with the first repositories", key, len(key)+len(v), v[:min(len(v), 80)])
	}
}

// TestDistributionSourceSharedLayer imports two images of one archive that
// share their base layer: that layer names both repositories, each image's
// own layer only its own.
func TestDistributionSourceSharedLayer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := map[string]string{"etc/base": "shared"}
	a := harness.NewImage("example.com/team/a:1", node, base, map[string]string{"a": "a"})
	b := harness.NewImage("example.com/team/b:1", node, base, map[string]string{"b": "b"})
	if _, err := e.importer().ImportArchive(e.ctx(), e.write("two.tar", harness.DockerSaveBytes(a, b))); err != nil {
		t.Fatalf("ImportArchive: %v", err)
	}
	key := "containerd.io/distribution.source.example.com"
	for _, c := range []struct {
		layer []byte
		want  string
	}{
		{a.Layers[0], "team/a,team/b"},
		{a.Layers[1], "team/a"},
		{b.Layers[1], "team/b"},
	} {
		info, err := e.client.ContentStore().Info(e.ctx(), digest.FromBytes(c.layer))
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Split(info.Labels[key], ",")
		slices.Sort(got)
		if strings.Join(got, ",") != c.want {
			t.Errorf("layer %s: label %s = %q, want %q", digest.FromBytes(c.layer), key, info.Labels[key], c.want)
		}
	}
}
