package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// TestImageMatchesDockerfile builds the image as `make image` does and
// checks that every platform's config and files are what deploy/Dockerfile's
// final stage makes: entrypoint, command, user, exposed port, labels (its
// ARGs set to the build's version and revision) and the binary's path, a
// static executable for that platform.
func TestImageMatchesDockerfile(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles imagedrop twice")
	}
	st, err := parseDockerfile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.entrypoint) == 0 || st.user == "" || st.copyDest == "" || len(st.labels) == 0 {
		t.Fatalf("parsed nothing from the Dockerfile's final stage: %+v", st)
	}
	// An instruction the builder does not mirror (ENV, WORKDIR, VOLUME, …)
	// must be added to it, and here.
	for _, in := range st.instructions {
		if !slices.Contains([]string{"ARG", "LABEL", "COPY", "USER", "EXPOSE", "ENTRYPOINT", "CMD"}, in) {
			t.Errorf("the Dockerfile's final stage has %s, which deploy/imagebuild does not set", in)
		}
	}
	dir := t.TempDir()
	c := config{
		out: filepath.Join(dir, "image.tar"), repository: "example.com/imagedrop", tag: "test",
		version: "v0.0.0-test", revision: "0123456789abcdef", platforms: []string{"linux/amd64", "linux/arm64"},
		moduleDir: filepath.Join("..", ".."), created: time.Unix(1700000000, 0).UTC(),
	}
	if err := build(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{}
	for k, v := range st.labels {
		for _, ref := range refs(v) {
			if _, ok := st.args[ref]; !ok {
				t.Errorf("label %s uses $%s, which is no ARG of the final stage", k, ref)
			}
		}
		wantLabels[k] = expand(v, map[string]string{"VERSION": c.version, "REVISION": c.revision})
	}
	for platform, img := range readArchive(t, c) {
		t.Run(platform, func(t *testing.T) {
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			got := cf.Config
			if p := cf.OS + "/" + cf.Architecture; p != platform {
				t.Errorf("config platform %s; want %s", p, platform)
			}
			if !slices.Equal(got.Entrypoint, st.entrypoint) || !slices.Equal(got.Cmd, st.cmd) {
				t.Errorf("entrypoint %q cmd %q; Dockerfile has %q %q", got.Entrypoint, got.Cmd, st.entrypoint, st.cmd)
			}
			if got.User != st.user {
				t.Errorf("user %q; Dockerfile has %q", got.User, st.user)
			}
			if ports := slices.Sorted(maps.Keys(got.ExposedPorts)); !slices.Equal(ports, st.exposed) {
				t.Errorf("exposed ports %q; Dockerfile has %q", ports, st.exposed)
			}
			if !maps.Equal(got.Labels, wantLabels) {
				t.Errorf("labels %q; Dockerfile makes %q", got.Labels, wantLabels)
			}
			checkBinary(t, img, st.copyDest, platform, c)
		})
	}
}

// readArchive opens the archive c.out as an OCI layout and returns its one
// image index's images by platform, checking the names and media types.
func readArchive(t *testing.T, c config) map[string]v1.Image {
	t.Helper()
	dir := t.TempDir()
	if err := untar(c.out, dir); err != nil {
		t.Fatal(err)
	}
	outer, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	om, err := outer.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(om.Manifests) != 1 || om.Manifests[0].MediaType != types.OCIImageIndex {
		t.Fatalf("index.json has %+v; want one OCI image index", om.Manifests)
	}
	if a := om.Manifests[0].Annotations; a[annotationImageName] != c.ref() || a["org.opencontainers.image.ref.name"] != c.ref() {
		t.Errorf("index.json names the image %q; want %s", a, c.ref())
	}
	inner, err := outer.ImageIndex(om.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := inner.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(im.Annotations, c.annotations()) {
		t.Errorf("image index annotations %q; want %q", im.Annotations, c.annotations())
	}
	imgs := map[string]v1.Image{}
	for _, m := range im.Manifests {
		if m.Platform == nil || m.MediaType != types.OCIManifestSchema1 {
			t.Fatalf("image index entry %+v: want an OCI manifest with a platform", m)
		}
		img, err := inner.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		imgs[m.Platform.OS+"/"+m.Platform.Architecture] = img
	}
	if got := slices.Sorted(maps.Keys(imgs)); !slices.Equal(got, c.platforms) {
		t.Fatalf("platforms %q; want %q", got, c.platforms)
	}
	return imgs
}

// checkBinary checks that the image's file at path is a root-owned 0755
// static executable for platform and, on this machine's platform, that it
// reports the build's version and revision.
func checkBinary(t *testing.T, img v1.Image, path, platform string, c config) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var data []byte
	for data == nil {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("no %s in the image", path)
		} else if err != nil {
			t.Fatal(err)
		}
		if "/"+strings.TrimPrefix(h.Name, "/") != path {
			continue
		}
		if h.Typeflag != tar.TypeReg || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: type %c mode %o owner %d:%d; want a 0755 file of 0:0", path, h.Typeflag, h.Mode, h.Uid, h.Gid)
		}
		if data, err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	arch := strings.TrimPrefix(platform, "linux/")
	if f.Machine != elfMachine[arch] {
		t.Errorf("%s: ELF machine %v; want %v", path, f.Machine, elfMachine[arch])
	}
	if slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
		t.Errorf("%s: dynamically linked; want static", path)
	}
	if platform != runtime.GOOS+"/"+runtime.GOARCH {
		return
	}
	bin := filepath.Join(t.TempDir(), "imagedrop")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "version").Output()
	if want := "imagedrop " + c.version + "\ncommit: " + c.revision + "\n"; err != nil || !strings.HasPrefix(string(out), want) {
		t.Errorf("imagedrop version: %q, %v; want it to start with %q", out, err, want)
	}
}

// refs are the names of the $NAME and ${NAME} references in s.
func refs(s string) []string {
	var names []string
	os.Expand(s, func(name string) string { names = append(names, name); return "" })
	return names
}
