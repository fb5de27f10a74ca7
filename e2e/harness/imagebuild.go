package harness

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BuildImageArchive builds the imagedrop image as `make image` does (the
// same program, both platforms), named repo:tag, with version as the
// binary's version, into dir; it returns the archive's path and the digest
// of the image index its index.json names.
func BuildImageArchive(dir, repo, tag, version string) (string, string, error) {
	_, file, _, _ := runtime.Caller(0)
	out := filepath.Join(dir, "imagedrop-image.tar")
	cmd := exec.Command("go", "run", "./deploy/imagebuild", "-out", out, "-repository", repo, "-tag", tag,
		"-version", version, "-revision", "e2e")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go run ./deploy/imagebuild: %w\n%s", err, b)
	}
	digest, err := archiveIndex(out, repo+":"+tag)
	return out, digest, err
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
