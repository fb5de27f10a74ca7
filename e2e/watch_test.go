package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

const node = "linux/amd64"

func img(name string, n int) *harness.Image {
	return harness.NewImage(name, node, map[string]string{"id": fmt.Sprintf("%s %d", name, n)})
}

// TestWatchLifecycle drives `imagedrop watch` through a node's life against
// real containerd: preload, rename-in, a slow in-place copy, a bad file that
// is fixed, a deleted file, SIGTERM, and a restart that skips what is done
// and re-imports what was pruned.
func TestWatchLifecycle(t *testing.T) {
	c := harness.RequireContainerd(t)
	ns := harness.Namespace(t)
	st := newStore(t, c, ns)
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	state := filepath.Join(dir, "state.json")
	if err := os.MkdirAll(filepath.Join(images, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}

	a, b, cc, slow, fixed := img("example.com/w/a:1", 1), img("example.com/w/b:1", 2), img("example.com/w/c:1", 3),
		img("example.com/w/slow:1", 4), img("example.com/w/fixed:1", 5)
	writeArchive(t, filepath.Join(images, "00-a.tar"), "none", a)
	writeArchive(t, filepath.Join(images, "sub", "10-b.tar.zst"), "zstd", b)
	if err := os.WriteFile(filepath.Join(images, "20-bad.tar.gz"), []byte("this is not an archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, ".hidden.tar"), []byte("ignored"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Old enough that the preload needs no settle.
	old := time.Now().Add(-time.Minute)
	for _, n := range []string{"00-a.tar", "sub/10-b.tar.zst", "20-bad.tar.gz"} {
		_ = os.Chtimes(filepath.Join(images, n), old, old)
	}

	d := startDaemon(t, c, ns, "--images-dir", images, "--state-file", state)
	d.waitReady(30 * time.Second)

	// Preload: good files done, the bad one failed with its cause, the
	// hidden one ignored.
	s := d.status()
	if f, _ := s.file("00-a.tar"); f.State != "done" || f.Attempts != 1 {
		t.Errorf("00-a.tar: %+v, want done after 1 attempt", f)
	}
	if f, _ := s.file("sub/10-b.tar.zst"); f.State != "done" {
		t.Errorf("sub/10-b.tar.zst: %+v, want done", f)
	}
	// The bad file is retried every few hundred ms, so it may be running again.
	bad := d.waitFile("20-bad.tar.gz", "failed", 5*time.Second)
	if bad.Attempts < 1 || !containsAll(bad.Error, "20-bad.tar.gz", "not a tar archive") {
		t.Errorf("20-bad.tar.gz: %+v, want failed naming the file and the cause", bad)
	}
	if _, ok := s.file(".hidden.tar"); ok {
		t.Errorf("hidden file in /status")
	}
	for _, want := range []*harness.Image{a, b} {
		got := st.waitImage(want.Name, time.Second)
		if got.Labels[importer.LabelPinned] != importer.LabelPinnedValue {
			t.Errorf("%s not pinned: %v", want.Name, got.Labels)
		}
	}

	// A file renamed in is imported at once.
	start := time.Now()
	dropArchive(t, images, "30-c.tar", cc)
	st.waitImage(cc.Name, 10*time.Second)
	t.Logf("rename → image in containerd: %s", time.Since(start))

	// A slow in-place copy, pausing less than --settle, is imported once, after it ends.
	data := harness.DockerSaveBytes(slow)
	f, err := os.Create(filepath.Join(images, "40-slow.tar"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := len(data)/5 + 1
	for off := 0; off < len(data); off += chunk {
		if _, err := f.Write(data[off:min(off+chunk, len(data))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // the slow copy itself, not synchronisation
	}
	_ = f.Close()
	st.waitImage(slow.Name, 10*time.Second)
	if f := d.waitFile("40-slow.tar", "done", 5*time.Second); f.Attempts != 1 {
		t.Errorf("slow copy took %d attempts, want 1", f.Attempts)
	}

	// The bad file is retried; fixed, it imports.
	tmp := filepath.Join(images, ".fix.partial")
	writeArchive(t, tmp, "gzip", fixed)
	if err := os.Rename(tmp, filepath.Join(images, "20-bad.tar.gz")); err != nil {
		t.Fatal(err)
	}
	st.waitImage(fixed.Name, 10*time.Second)
	d.waitFile("20-bad.tar.gz", "done", 5*time.Second)

	// A deleted file's images are unpinned, never deleted.
	if err := os.Remove(filepath.Join(images, "00-a.tar")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a unpinned", func() error {
		got, ok := st.get(a.Name)
		if !ok {
			t.Fatalf("%s was deleted; imagedrop must only unpin", a.Name)
		}
		if _, pinned := got.Labels[importer.LabelPinned]; pinned {
			return errors.New("still pinned")
		}
		return nil
	})

	if code := d.stop(); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}

	// Restart: unchanged files are skipped without reading them, but a file
	// whose image was pruned from containerd is imported again.
	if err := st.client.ImageService().Delete(st.ctx, b.Name); err != nil {
		t.Fatal(err)
	}
	d2 := startDaemon(t, c, ns, "--images-dir", images, "--state-file", state)
	d2.waitReady(30 * time.Second)
	s = d2.status()
	for _, n := range []string{"30-c.tar", "40-slow.tar", "20-bad.tar.gz"} {
		if f, _ := s.file(n); f.State != "done" || f.Attempts != 0 {
			t.Errorf("%s after restart: %+v, want done with 0 attempts (skipped)", n, f)
		}
	}
	if f, _ := s.file("sub/10-b.tar.zst"); f.State != "done" || f.Attempts != 1 {
		t.Errorf("sub/10-b.tar.zst after restart: %+v, want re-imported (1 attempt)", f)
	}
	st.waitImage(b.Name, time.Second)
	_, metricsText, err := d2.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(metricsText), `imagedrop_files_processed_total{kind="archive",result="skipped"} 3`) {
		t.Errorf("/metrics does not count 3 skipped archives:\n%s", grep(string(metricsText), "files_processed"))
	}
	if code := d2.stop(); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
}

// TestWatchManyFiles drops 500 archives at once into a watched directory.
func TestWatchManyFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 500 archives")
	}
	e := newWatchEnv(t, true)
	st, images := e.st, e.images
	d := e.start(t, "--workers", "4")
	d.waitReady(30 * time.Second)

	const n = 500
	staging := t.TempDir()
	for i := range n {
		p := filepath.Join(staging, fmt.Sprintf("%03d.tar", i))
		writeArchive(t, p, "none", img(fmt.Sprintf("example.com/many/img%03d:1", i), i))
	}
	start := time.Now()
	for i := range n {
		name := fmt.Sprintf("%03d.tar", i)
		if err := os.Rename(filepath.Join(staging, name), filepath.Join(images, name)); err != nil {
			t.Fatal(err)
		}
	}
	d.waitAllDone(n, 5*time.Minute)
	t.Logf("500 archives imported in %s", time.Since(start))
	for i := range n {
		if _, ok := st.get(fmt.Sprintf("example.com/many/img%03d:1", i)); !ok {
			t.Errorf("image %d missing", i)
		}
	}
	for _, f := range d.status().Files {
		if f.Attempts != 1 {
			t.Errorf("%s: %d attempts, want 1", f.Path, f.Attempts)
		}
	}
	if code := d.stop(); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
}

// TestWatchSIGTERMDuringImport stops the daemon in the middle of a large
// import: it exits 0 within the grace period and leaves no image behind.
func TestWatchSIGTERMDuringImport(t *testing.T) {
	e := newWatchEnv(t, true)
	st, images := e.st, e.images
	big := harness.RandomImage("example.com/big/img:1", node, 7, 4, 64<<20)
	writeArchive(t, filepath.Join(images, "big.tar.gz"), "gzip", big)
	d := e.start(t, "--shutdown-grace", "200ms")
	d.waitFile("big.tar.gz", "running", 30*time.Second)
	start := time.Now()
	if code := d.stop(); code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	t.Logf("exited %s after SIGTERM", time.Since(start))
	if _, ok := st.get(big.Name); ok {
		t.Errorf("a cancelled import left its image behind")
	}
	if !strings.Contains(d.logs.String(), "grace") {
		t.Errorf("logs do not mention the grace period:\n%s", d.logs)
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestWatchReplaceAndRecreate covers a directory that does not exist at
// start, a file replaced by one of the same size with an older mtime, and
// the directory deleted and created again, without a restart.
func TestWatchReplaceAndRecreate(t *testing.T) {
	e := newWatchEnv(t, false)
	st, images := e.st, e.images
	d := e.start(t)
	d.waitReady(30 * time.Second) // nothing to preload

	if err := os.Mkdir(images, 0o755); err != nil {
		t.Fatal(err)
	}
	x, y, z := img("example.com/r/x:1", 1), img("example.com/r/y:1", 2), img("example.com/r/z:1", 3)
	dropArchive(t, images, "app.tar", x)
	st.waitImage(x.Name, 10*time.Second)
	// Done, not just created: a file replaced during its import cancels the
	// import, which then removes the images it made (all or nothing).
	d.waitFile("app.tar", "done", 10*time.Second)

	// Same size, older mtime: k3s would skip it; imagedrop imports it.
	before, err := os.Stat(filepath.Join(images, "app.tar"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(images, ".app.tar.tmp")
	writeArchive(t, tmp, "none", y)
	older := before.ModTime().Add(-time.Hour)
	if err := os.Chtimes(tmp, older, older); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(tmp)
	if after.Size() != before.Size() {
		t.Fatalf("test images differ in size: %d vs %d", after.Size(), before.Size())
	}
	if err := os.Rename(tmp, filepath.Join(images, "app.tar")); err != nil {
		t.Fatal(err)
	}
	st.waitImage(y.Name, 10*time.Second)
	d.waitFile("app.tar", "done", 10*time.Second)

	// The directory goes away (its images are unpinned) and comes back.
	if err := os.RemoveAll(images); err != nil {
		t.Fatal(err)
	}
	// x was unpinned when app.tar stopped producing it, y when the directory went.
	eventually(t, 10*time.Second, "images unpinned after the directory went away", func() error {
		for _, n := range []string{x.Name, y.Name} {
			got, ok := st.get(n)
			if !ok {
				t.Fatalf("%s deleted; imagedrop must only unpin", n)
			}
			if _, pinned := got.Labels[importer.LabelPinned]; pinned {
				return fmt.Errorf("%s still pinned", n)
			}
		}
		return nil
	})
	if err := os.Mkdir(images, 0o755); err != nil {
		t.Fatal(err)
	}
	dropArchive(t, images, "again.tar", z)
	st.waitImage(z.Name, 10*time.Second)
	if code := d.stop(); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
}

// TestWatchProbes checks /healthz and /readyz while containerd is absent.
func TestWatchProbes(t *testing.T) {
	harness.RequireContainerd(t) // for the binary's environment only
	dir := t.TempDir()
	fake := &harness.Containerd{Address: filepath.Join(dir, "no-containerd.sock")}
	d := startDaemon(t, fake, "k8s.io", "--images-dir", filepath.Join(dir, "images"), "--state-file", filepath.Join(dir, "state.json"))
	eventually(t, 10*time.Second, "/healthz 200", func() error {
		code, _, err := d.get("/healthz")
		if err != nil || code != 200 {
			return fmt.Errorf("%d %v", code, err)
		}
		return nil
	})
	code, body, err := d.get("/readyz")
	if err != nil || code != 503 || !strings.Contains(string(body), "containerd socket "+fake.Address+": no such file") {
		t.Errorf("/readyz without containerd = %d %q %v, want 503 saying its socket is not there", code, body, err)
	}
	if code := d.stop(); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
}
