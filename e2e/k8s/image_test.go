package k8s

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// buildImageArchive builds the imagedrop image as `make image` does (the
// same program, both platforms), named imagedropImage, into dir, and
// returns the archive's path and the digest of the image index it names.
func buildImageArchive(t *testing.T, dir string) (string, string) {
	t.Helper()
	repo, tag, _ := strings.Cut(imagedropImage, ":")
	out := filepath.Join(dir, "imagedrop-image.tar")
	cmd := exec.Command("go", "run", "./deploy/imagebuild", "-out", out, "-repository", repo, "-tag", tag,
		"-version", "v0.0.0-e2e", "-revision", "e2e")
	cmd.Dir = moduleRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./deploy/imagebuild: %v\n%s", err, b)
	}
	digest, err := archiveIndex(out, imagedropImage)
	if err != nil {
		t.Fatal(err)
	}
	return out, digest
}

// archiveIndex is the digest of the entry of the OCI archive at path's
// index.json named name.
func archiveIndex(path, name string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("%s: no index.json", path)
		} else if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		if h.Name != "index.json" {
			continue
		}
		var idx ocispec.Index
		if err := json.NewDecoder(tr).Decode(&idx); err != nil {
			return "", fmt.Errorf("%s: index.json: %w", path, err)
		}
		for _, m := range idx.Manifests {
			if m.Annotations["io.containerd.image.name"] == name && m.MediaType == ocispec.MediaTypeImageIndex {
				return m.Digest.String(), nil
			}
		}
		return "", fmt.Errorf("%s: index.json names no image index %s: %+v", path, name, idx.Manifests)
	}
}
