package e2e

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

// TestUnpinCommand imports two archives with imagedrop import (pinned, with
// a retag), then releases one file's images with unpin --source and the rest
// with unpin --all. After each, containerd's image store says: the released
// images carry neither imagedrop's pin nor its source label, everything else
// about them (target, other labels, content) is as it was, the other file's
// images are untouched, and an image pinned by someone else keeps its pin.
func TestUnpinCommand(t *testing.T) {
	c := harness.RequireContainerd(t)
	ns := harness.Namespace(t)
	dir := t.TempDir()
	imgA := harness.NewImage("example.com/unpin/a:1", "linux/amd64", map[string]string{"a": "1"})
	imgB := harness.NewImage("example.com/unpin/b:1", "linux/amd64", map[string]string{"b": "1"})
	for name, img := range map[string]*harness.Image{"a.tar": imgA, "b.tar": imgB} {
		if err := os.WriteFile(filepath.Join(dir, name), harness.DockerSaveBytes(img), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"IMAGEDROP_CONTAINERD_ADDRESS=" + c.Address, "IMAGEDROP_NAMESPACE=" + ns}
	if out, errOut, code := imagedrop(t, append(env, "IMAGEDROP_EXTRA_REGISTRY=mirror.local"), "import",
		filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")); code != 0 {
		t.Fatalf("import: exit %d\n%s\n%s", code, out, errOut)
	}
	fromA := []string{"example.com/unpin/a:1", "mirror.local/unpin/a:1"}
	fromB := []string{"example.com/unpin/b:1", "mirror.local/unpin/b:1"}

	client := c.Client(t)
	ctx := namespaces.WithNamespace(context.Background(), ns)
	is := client.ImageService()
	// An image imagedrop did not bring, pinned (as the CRI pins its sandbox image).
	foreign := images.Image{Name: "example.com/unpin/foreign:1", Target: mustGet(t, ctx, is, fromA[0]).Target,
		Labels: map[string]string{importer.LabelPinned: importer.LabelPinnedValue}}
	if _, err := is.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	before := map[string]images.Image{}
	for _, n := range append(append([]string{foreign.Name}, fromA...), fromB...) {
		before[n] = mustGet(t, ctx, is, n)
	}

	out, errOut, code := imagedrop(t, env, "unpin", "--source", filepath.Join("/some/dir", "a.tar"))
	if code != 0 || !strings.Contains(out, "2 of 2 images released") {
		t.Fatalf("unpin --source: exit %d\n%s\n%s", code, out, errOut)
	}
	checkReleased(t, ctx, is, before, fromA)
	checkUntouched(t, ctx, is, before, append([]string{foreign.Name}, fromB...))

	out, errOut, code = imagedrop(t, env, "unpin", "--all")
	if code != 0 || !strings.Contains(out, "2 of 2 images released") {
		t.Fatalf("unpin --all: exit %d\n%s\n%s", code, out, errOut)
	}
	checkReleased(t, ctx, is, before, append(append([]string{}, fromA...), fromB...))
	checkUntouched(t, ctx, is, before, []string{foreign.Name})
	all, err := is.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range all {
		if _, ok := img.Labels[importer.LabelSource]; ok {
			t.Errorf("after unpin --all, %s still has %s", img.Name, importer.LabelSource)
		}
		if _, ok := img.Labels[importer.LabelPinned]; ok && img.Name != foreign.Name {
			t.Errorf("after unpin --all, %s is still pinned", img.Name)
		}
	}
	// The content of every image is still complete.
	for _, n := range append(fromA, fromB...) {
		ok, _, _, missing, err := images.Check(ctx, client.ContentStore(), before[n].Target, nil)
		if err != nil || !ok || len(missing) > 0 {
			t.Errorf("content of %s after unpin: available %v, missing %v, err %v", n, ok, missing, err)
		}
	}

	// Nothing left to release: a second run changes nothing and succeeds.
	if out, _, code := imagedrop(t, env, "unpin", "--all"); code != 0 || !strings.Contains(out, "0 of 0 images released") {
		t.Errorf("second unpin --all: exit %d, %q", code, out)
	}
}

func TestUnpinUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"unpin"}, "give --all or --source FILE"},
		{[]string{"unpin", "--all", "--source", "a.tar"}, "not both"},
		{[]string{"unpin", "a.tar"}, `unexpected argument "a.tar"`},
	} {
		_, stderr, code := imagedrop(t, nil, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tt.args, code, stderr, tt.want)
		}
	}
}

func mustGet(t *testing.T, ctx context.Context, is images.Store, name string) images.Image {
	t.Helper()
	img, err := is.Get(ctx, name)
	if err != nil {
		t.Fatalf("image %s: %v", name, err)
	}
	return img
}

// checkReleased checks that each named image lost exactly imagedrop's pin
// and source labels.
func checkReleased(t *testing.T, ctx context.Context, is images.Store, before map[string]images.Image, names []string) {
	t.Helper()
	for _, n := range names {
		got := mustGet(t, ctx, is, n)
		want := maps.Clone(before[n].Labels)
		if want[importer.LabelSource] == "" || want[importer.LabelPinned] == "" {
			t.Fatalf("%s had labels %v before unpin; want imagedrop's", n, want)
		}
		delete(want, importer.LabelSource)
		delete(want, importer.LabelPinned)
		if !maps.Equal(got.Labels, want) || got.Target.Digest != before[n].Target.Digest {
			t.Errorf("%s after unpin: labels %v, target %s; want %v, %s", n, got.Labels, got.Target.Digest, want, before[n].Target.Digest)
		}
	}
}

// checkUntouched checks that each named image is as it was.
func checkUntouched(t *testing.T, ctx context.Context, is images.Store, before map[string]images.Image, names []string) {
	t.Helper()
	for _, n := range names {
		got := mustGet(t, ctx, is, n)
		if !maps.Equal(got.Labels, before[n].Labels) || got.Target.Digest != before[n].Target.Digest {
			t.Errorf("%s changed: labels %v, target %s; want %v, %s", n, got.Labels, got.Target.Digest, before[n].Labels, before[n].Target.Digest)
		}
	}
}
