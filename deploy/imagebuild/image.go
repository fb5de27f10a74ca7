package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What deploy/Dockerfile's final stage sets; dockerfile_test.go holds the
// two to the same values.
const (
	binaryPath = "/usr/local/bin/imagedrop"
	imageUser  = "0:0"
	metricPort = "9365/tcp"
	sourceURL  = "https://github.com/imagedrop/imagedrop"
	licenses   = "Apache-2.0"
)

var (
	entrypoint = []string{binaryPath}
	command    = []string{"watch"}
	// The PATH of distroless, the Dockerfile's base.
	env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
)

// config is what one build makes.
type config struct {
	out               string
	repository, tag   string
	version, revision string
	platforms         []string // OS/ARCH
	moduleDir         string
	created           time.Time // of the files, the configs and the annotation
}

func (c config) ref() string { return c.repository + ":" + c.tag }

// labels are the image's OCI labels, as the Dockerfile's LABEL sets them.
func (c config) labels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "imagedrop",
		"org.opencontainers.image.description": "Imports container image archives dropped on a node into containerd",
		"org.opencontainers.image.source":      sourceURL,
		"org.opencontainers.image.licenses":    licenses,
		"org.opencontainers.image.version":     c.version,
		"org.opencontainers.image.revision":    c.revision,
	}
}

// annotations are the manifests' and the index's: the labels and the time.
func (c config) annotations() map[string]string {
	a := c.labels()
	a["org.opencontainers.image.created"] = c.created.Format(time.RFC3339)
	return a
}

// build compiles a binary per platform and writes the archive.
func build(ctx context.Context, c config) error {
	tmp, err := os.MkdirTemp("", "imagebuild-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range c.platforms {
		goos, goarch, ok := strings.Cut(p, "/")
		if !ok || goos == "" || goarch == "" || strings.Contains(goarch, "/") {
			return fmt.Errorf("platform %q: want OS/ARCH, e.g. linux/arm64", p)
		}
		bin := filepath.Join(tmp, "imagedrop-"+goos+"-"+goarch)
		if err := compile(ctx, c, goos, goarch, bin); err != nil {
			return err
		}
		img, err := platformImage(c, goos, goarch, bin)
		if err != nil {
			return fmt.Errorf("image for %s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: goos, Architecture: goarch}},
		})
	}
	idx = mutate.Annotations(idx, c.annotations()).(v1.ImageIndex)
	if err := writeArchive(c.out, c.ref(), c.created, idx, tmp); err != nil {
		return fmt.Errorf("write %s: %w", c.out, err)
	}
	return nil
}

// compile builds cmd/imagedrop for goos/goarch as a static binary, the way
// the Makefile's build target and the Dockerfile do.
func compile(ctx context.Context, c config, goos, goarch, out string) error {
	ldflags := "-s -w -X main.version=" + c.version
	if c.revision != "" {
		ldflags += " -X main.commit=" + c.revision
	}
	// No VCS stamp: the commit is -revision's, so a build is the same with
	// or without a .git (and imagedrop version shows no other).
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, "./cmd/imagedrop")
	cmd.Dir = c.moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build for %s/%s: %w\n%s", goos, goarch, err, b)
	}
	return nil
}

// platformImage is the one-layer image of the binary bin for goos/goarch.
func platformImage(c config, goos, goarch, bin string) (v1.Image, error) {
	layerTar, err := binaryLayer(bin, c.created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Created:      v1.Time{Time: c.created},
		OS:           goos,
		Architecture: goarch,
		Config: v1.Config{
			Entrypoint:   entrypoint,
			Cmd:          command,
			User:         imageUser,
			Env:          env,
			ExposedPorts: map[string]struct{}{metricPort: {}},
			Labels:       c.labels(),
		},
	})
	if err != nil {
		return nil, err
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: c.created},
			CreatedBy: "imagebuild: COPY imagedrop " + binaryPath,
		},
	})
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, c.annotations()).(v1.Image), nil
}

// binaryLayer is an uncompressed layer holding bin at binaryPath, with its
// parent directories, owned by root, timed at mtime.
func binaryLayer(bin string, mtime time.Time) ([]byte, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	dir := ""
	for _, part := range strings.Split(strings.Trim(filepath.Dir(binaryPath), "/"), "/") {
		dir += part + "/"
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: mtime}); err != nil {
			return nil, err
		}
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(binaryPath, "/"), Mode: 0o755, Size: int64(len(data)), ModTime: mtime}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
