package importer_test

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

// TestImportMatchesContainerd imports the same archives with imagedrop and
// with containerd's own client.Import, into two namespaces, and checks that
// both give the same images: the same names, targets and content, with the
// same garbage collection labels. The
// uncompressed archives take imagedrop's parallel path (blobs written
// several at a time from sections of the file), the compressed ones its
// stream path.
func TestImportMatchesContainerd(t *testing.T) {
	t.Parallel()
	many := harness.RandomImage("example.com/layers:8", node, 7, 8, 300<<10)
	small := harness.NewImage("busybox:1.36", node, map[string]string{"etc/os-release": "ID=test"}, map[string]string{"a": "a"})
	shared := harness.NewImage("example.com/shared:1", node, map[string]string{"etc/os-release": "ID=test"}, map[string]string{"b": "b"})
	amd := harness.NewImage("docker.io/library/multi:1", "linux/amd64", map[string]string{"arch": "amd64"})
	arm := harness.NewImage("docker.io/library/multi:1", "linux/arm64", map[string]string{"arch": "arm64"})
	big := harness.RandomImage("example.com/big:1", node, 9, 1, 9<<20+123) // blobs of several chunks
	save := harness.DockerSaveBytes(many, small, shared, big)
	oci, _ := harness.OCILayoutBytes(harness.OCIEntry{
		Images:      []*harness.Image{amd, arm},
		Annotations: map[string]string{images.AnnotationImageName: "docker.io/library/multi:1"},
	}, harness.OCIImage(many), harness.OCIImage(big))

	for _, tt := range []struct {
		file        string
		data        []byte
		compression string
	}{
		{"save.tar", save, "none"},
		{"save.tar.gz", save, "gzip"},
		{"oci.tar", oci, "none"},
		{"oci.tar.zst", oci, "zstd"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			data := mustCompress(t, tt.data, tt.compression)
			if _, err := e.importer(func(c *importer.Config) { c.Unpack = false }).ImportArchive(context.Background(), e.write(tt.file, data)); err != nil {
				t.Fatalf("ImportArchive: %v", err)
			}

			// containerd's client.Import reads tar only: it gets the archive
			// before compression.
			peer := e.ns + "-peer"
			ctx := namespaces.WithNamespace(context.Background(), peer)
			if _, err := e.client.Import(ctx, bytes.NewReader(tt.data), containerd.WithAllPlatforms(true)); err != nil {
				t.Fatalf("client.Import: %v", err)
			}

			got, want := e.contentOfImages(e.ctx()), e.contentOfImages(ctx)
			if len(want) == 0 {
				t.Fatal("client.Import created no images")
			}
			gotLabels, wantLabels := e.gcLabels(e.ctx(), got), e.gcLabels(ctx, want)
			for d, w := range wantLabels {
				if g := gotLabels[d]; !maps.Equal(g, w) {
					t.Errorf("%s: gc labels %v, containerd's %v", d, g, w)
				}
			}
			for name, w := range want {
				g, ok := got[name]
				if !ok {
					t.Errorf("%s: imported by containerd, not by imagedrop", name)
					continue
				}
				if g[0] != w[0] {
					t.Errorf("%s: target %s, containerd's %s", name, g[0], w[0])
				}
				if !slices.Equal(g, w) {
					t.Errorf("%s: content %v, containerd's %v", name, g, w)
				}
			}
		})
	}
}

// contentOfImages maps every image of the namespace in ctx to its target
// digest followed by the sorted digests of all content it references, every
// platform included.
func (e *env) contentOfImages(ctx context.Context) map[string][]digest.Digest {
	e.t.Helper()
	cs := e.client.ContentStore()
	imgs, err := e.client.ImageService().List(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]digest.Digest{}
	for _, img := range imgs {
		seen := map[digest.Digest]bool{}
		walk := images.HandlerFunc(func(ctx context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			seen[d.Digest] = true
			return images.Children(ctx, cs, d)
		})
		if err := images.Walk(ctx, walk, img.Target); err != nil {
			e.t.Fatalf("walk %s: %v", img.Name, err)
		}
		all := slices.Sorted(maps.Keys(seen))
		out[strings.TrimSpace(img.Name)] = append([]digest.Digest{img.Target.Digest}, all...)
	}
	return out
}

// gcLabels maps each blob of the namespace in ctx that the images reference
// to its garbage collection labels (containerd.io/gc.ref.*), which keep
// what it references alive once the import's lease is gone.
func (e *env) gcLabels(ctx context.Context, imgs map[string][]digest.Digest) map[digest.Digest]map[string]string {
	e.t.Helper()
	out := map[digest.Digest]map[string]string{}
	for _, ds := range imgs {
		for _, d := range ds {
			info, err := e.client.ContentStore().Info(ctx, d)
			if err != nil {
				e.t.Fatalf("info %s: %v", d, err)
			}
			out[d] = map[string]string{}
			for k, v := range info.Labels {
				if strings.HasPrefix(k, "containerd.io/gc.ref.") {
					out[d][k] = v
				}
			}
		}
	}
	return out
}
