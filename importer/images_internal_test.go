package importer

import (
	"log/slog"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// TestUpsert checks both orders of upsert against containerd: create
// first (archive images, retags) and update first (images a list's pull
// just stored), each for a name that exists and one that does not.
func TestUpsert(t *testing.T) {
	c := harness.RequireContainerd(t)
	ctx := namespaces.WithNamespace(t.Context(), harness.Namespace(t))
	im, err := New(c.Client(t), DefaultConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	is := im.client.ImageService()
	target := func(b byte) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes([]byte{b}), Size: 1}
	}
	for _, exists := range []bool{false, true} {
		name := "example.com/upsert:" + map[bool]string{false: "create-first", true: "update-first"}[exists]

		isNew, err := im.upsert(ctx, images.Image{Name: name, Target: target(1), Labels: map[string]string{"a": "1"}}, exists)
		if err != nil || !isNew {
			t.Fatalf("upsert(%s, exists=%t) of a missing image = %t, %v; want new", name, exists, isNew, err)
		}
		isNew, err = im.upsert(ctx, images.Image{Name: name, Target: target(2), Labels: map[string]string{"b": "2"}}, exists)
		if err != nil || isNew {
			t.Fatalf("upsert(%s, exists=%t) of an existing image = %t, %v; want updated", name, exists, isNew, err)
		}
		got, err := is.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got.Target.Digest != target(2).Digest || got.Labels["b"] != "2" || got.Labels["a"] != "" {
			t.Errorf("%s after the update: target %s, labels %v; want target %s, labels {b: 2}", name, got.Target.Digest, got.Labels, target(2).Digest)
		}
	}
}
