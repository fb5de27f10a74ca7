package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// TestImageArchive builds the imagedrop image as `make image` does and
// imports it with the built binary and with containerd's own ctr (the one
// of the containerd under test): both give the image its name, pointing at
// the archive's multi-platform index, with every platform's manifest in the
// content store.
func TestImageArchive(t *testing.T) {
	c := harness.RequireContainerd(t)
	const repo, tag = "example.com/e2e/imagedrop", "archive"
	archive, index, err := harness.BuildImageArchive(t.TempDir(), repo, tag, "v0.0.0-e2e")
	if err != nil {
		t.Fatal(err)
	}
	ctr := "ctr"
	if bin := os.Getenv("IMAGEDROP_TEST_CONTAINERD"); bin != "" {
		ctr = filepath.Join(filepath.Dir(bin), "ctr")
	}
	client := c.Client(t)
	for _, tt := range []struct {
		name string
		cmd  func(ns string) *exec.Cmd
	}{
		{"imagedrop import", func(ns string) *exec.Cmd {
			return exec.Command(imagedropBin, "import", "--containerd-address", c.Address, "--namespace", ns, archive)
		}},
		{"ctr images import", func(ns string) *exec.Cmd {
			return exec.Command(ctr, "--address", c.Address, "--namespace", ns, "images", "import", "--all-platforms", archive)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ns := harness.Namespace(t)
			if out, err := tt.cmd(ns).CombinedOutput(); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			ctx := namespaces.WithNamespace(t.Context(), ns)
			img, err := client.ImageService().Get(ctx, repo+":"+tag)
			if err != nil {
				t.Fatal(err)
			}
			if img.Target.Digest.String() != index {
				t.Fatalf("%s points at %s; want the archive's index %s", img.Name, img.Target.Digest, index)
			}
			for _, p := range []string{"linux/amd64", "linux/arm64"} {
				ok, _, _, missing, err := images.Check(ctx, client.ContentStore(), img.Target, platforms.Only(platforms.MustParse(p)))
				if err != nil || !ok || len(missing) > 0 {
					t.Errorf("%s for %s: complete %v, missing %v, %v; want all its content", img.Name, p, ok, missing, err)
				}
			}
		})
	}
}
