package importer_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

// secret is what a host file imagedrop must never read holds; a test fails
// if it shows in an error or a result.
const secret = "root:$6$imagedrop-test-secret-4f1c9a$"

// untrustedDir is an images directory (root) beside a directory of host
// files (outside), as a writer of the images directory could point at.
type untrustedDir struct {
	t             *testing.T
	root, outside string
}

func newUntrustedDir(t *testing.T) untrustedDir {
	t.Helper()
	base := t.TempDir()
	d := untrustedDir{t: t, root: filepath.Join(base, "images"), outside: filepath.Join(base, "host")}
	for _, dir := range []string{d.root, d.outside} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func (d untrustedDir) file(path string, data []byte) string {
	d.t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		d.t.Fatal(err)
	}
	return path
}

func (d untrustedDir) fifo(path string) string {
	d.t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		d.t.Fatal(err)
	}
	return path
}

func (d untrustedDir) symlink(target, name string) string {
	d.t.Helper()
	p := filepath.Join(d.root, name)
	if err := os.Symlink(target, p); err != nil {
		d.t.Fatal(err)
	}
	return p
}

// forKind is im, or for a list an importer of the CRI's namespace.
func forKind(e *env, im *importer.Importer, path string) *importer.Importer {
	if !strings.HasSuffix(path, ".txt") {
		return im
	}
	return e.importer(func(c *importer.Config) { c.Namespace = importer.CRINamespace })
}

// process runs Process and fails the test if it has not returned after a
// minute: a FIFO must never block it.
func process(t *testing.T, im *importer.Importer, root, path string) (importer.Result, error) {
	t.Helper()
	type result struct {
		res importer.Result
		err error
	}
	done := make(chan result, 1)
	var progress atomic.Int64
	go func() {
		in := importer.Input{Root: root, Path: path, Progress: func() { progress.Add(1) }}
		res, err := im.Process(context.Background(), in)
		done <- result{res, err}
	}()
	select {
	case r := <-done:
		if r.err == nil && r.res.BytesRead > 0 && progress.Load() == 0 {
			t.Errorf("Process(%s) read %d bytes and never called Progress", path, r.res.BytesRead)
		}
		return r.res, r.err
	case <-time.After(time.Minute):
		t.Fatalf("Process(%s) still blocked after a minute", path)
		return importer.Result{}, nil
	}
}

// TestProcessRefusesUntrustedFiles: in an images directory only regular
// files are read, a symlink only if it resolves inside the directory, and a
// hard-linked file not at all. Each refusal is permanent, names the file,
// never shows what it points at, and leaves nothing in containerd.
func TestProcessRefusesUntrustedFiles(t *testing.T) {
	e := newEnv(t)
	d := newUntrustedDir(t)
	im := e.importer()
	shadow := d.file(filepath.Join(d.outside, "shadow"), []byte(secret+"\n"))
	hostArchive := d.file(filepath.Join(d.outside, "host.tar"),
		harness.DockerSaveBytes(harness.NewImage("example.com/open/host:1", node, map[string]string{"a": secret})))
	hostFIFO := d.fifo(filepath.Join(d.outside, "pipe"))
	linked := d.file(filepath.Join(d.root, "linked.tar"), []byte(secret))
	if err := os.Link(linked, filepath.Join(d.outside, "other-name")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(d.root, "dir.tar"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want error
	}{
		{"absolute symlink out", d.symlink(shadow, "shadow.txt"), importer.ErrOutsideRoot},
		{"relative symlink out", d.symlink("../host/shadow", "rel.txt"), importer.ErrOutsideRoot},
		{"symlink to an archive out", d.symlink(hostArchive, "host.tar"), importer.ErrOutsideRoot},
		{"symlink to a FIFO out", d.symlink(hostFIFO, "pipe-out.tar"), importer.ErrOutsideRoot},
		{"magic link", d.symlink("/proc/self/root"+shadow, "magic.txt"), importer.ErrOutsideRoot},
		{"FIFO", d.fifo(filepath.Join(d.root, "pipe.tar")), importer.ErrNotRegular},
		{"symlink to a FIFO in", d.symlink("pipe.tar", "pipe-in.tar.gz"), importer.ErrNotRegular},
		{"FIFO list", d.fifo(filepath.Join(d.root, "pipe.txt")), importer.ErrNotRegular},
		{"directory", filepath.Join(d.root, "dir.tar"), importer.ErrNotRegular},
		{"hard link", linked, importer.ErrHardLinked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := process(t, forKind(e, im, tt.path), d.root, tt.path)
			if !errors.Is(err, tt.want) || !importer.IsPermanent(err) {
				t.Fatalf("error = %v, want permanent %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.path) || strings.Contains(err.Error(), "imagedrop-test-secret") {
				t.Errorf("error %q: want it to name %s and show nothing of the target", err, tt.path)
			}
			if res.BytesRead != 0 || len(res.Images) != 0 || len(res.References) != 0 {
				t.Errorf("result %+v: want nothing read", res)
			}
		})
	}
	if names := e.imageNames(); len(names) != 0 {
		t.Errorf("images after refusals: %v, want none", names)
	}
	if blobs := e.blobs(); len(blobs) != 0 {
		t.Errorf("content after refusals: %v, want none", blobs)
	}
}

// TestProcessFollowsLinksInside: symlinks that stay inside the images
// directory are followed, as a ConfigMap volume's are (name → ..data/name,
// ..data → ..2024_…), relative or absolute.
func TestProcessFollowsLinksInside(t *testing.T) {
	e := newEnv(t)
	d := newUntrustedDir(t)
	im := e.importer()
	a := harness.NewImage("example.com/open/a:1", node, map[string]string{"a": "1"})
	b := harness.NewImage("example.com/open/b:1", node, map[string]string{"b": "1"})
	gen := filepath.Join(d.root, "..2024_01_01_00_00_00.1")
	if err := os.Mkdir(gen, 0o755); err != nil {
		t.Fatal(err)
	}
	d.file(filepath.Join(gen, "a.tar"), harness.DockerSaveBytes(a))
	d.symlink(filepath.Base(gen), "..data")
	viaData := d.symlink(filepath.Join("..data", "a.tar"), "a.tar")
	real := d.file(filepath.Join(d.root, "b-real.tar"), harness.DockerSaveBytes(b))
	absolute := d.symlink(real, "b.tar")
	for _, p := range []string{viaData, absolute} {
		res, err := process(t, im, d.root, p)
		if err != nil {
			t.Fatalf("Process(%s): %v", p, err)
		}
		if res.BytesRead == 0 || len(res.Images) == 0 {
			t.Errorf("Process(%s) = %+v, want images read", p, res)
		}
	}
	for _, name := range []string{"example.com/open/a:1", "example.com/open/b:1"} {
		e.checkImage(name, map[string]*harness.Image{"example.com/open/a:1": a, "example.com/open/b:1": b}[name],
			map[string]string{"example.com/open/a:1": "a.tar", "example.com/open/b:1": "b.tar"}[name], true)
	}
}

// TestProcessWithoutRoot: imagedrop import (root "") reads what it is
// named, through symlinks and hard links, but never blocks on, nor reads,
// a file that is not regular.
func TestProcessWithoutRoot(t *testing.T) {
	e := newEnv(t)
	d := newUntrustedDir(t)
	im := e.importer()
	c := harness.NewImage("example.com/open/c:1", node, map[string]string{"c": "1"})
	archive := d.file(filepath.Join(d.outside, "c.tar"), harness.DockerSaveBytes(c))
	if err := os.Link(archive, filepath.Join(d.outside, "c-link.tar")); err != nil {
		t.Fatal(err)
	}
	link := d.symlink(filepath.Join(d.outside, "c-link.tar"), "c.tar")
	if _, err := process(t, im, "", link); err != nil {
		t.Fatalf("Process of a symlink to a hard-linked archive: %v", err)
	}
	e.checkImage("example.com/open/c:1", c, "c.tar", true)

	pipe := d.fifo(filepath.Join(d.outside, "pipe.tar"))
	for _, p := range []string{pipe, d.symlink(pipe, "pipe.tar"), d.fifo(filepath.Join(d.root, "list.txt"))} {
		_, err := process(t, forKind(e, im, p), "", p)
		if !errors.Is(err, importer.ErrNotRegular) || !importer.IsPermanent(err) {
			t.Errorf("Process(%s) error = %v, want permanent %v", p, err, importer.ErrNotRegular)
		}
	}
}
