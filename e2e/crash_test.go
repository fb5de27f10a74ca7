package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// bigArchive writes a docker save of an image of random layers (64 MiB
// each), compressed as compression, to dir/name, and returns its path.
func bigArchive(t *testing.T, dir, name, image, compression string, seed uint64, layers int) string {
	t.Helper()
	path := filepath.Join(dir, name)
	writeArchive(t, path, compression, harness.RandomImage(image, "linux/amd64", seed, layers, 64<<20))
	return path
}

// leftovers is harness.Leftovers, failing the test on error.
func leftovers(t *testing.T, client *containerd.Client, ns string) []string {
	t.Helper()
	left, err := harness.Leftovers(context.Background(), client, ns, "overlayfs")
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// waitUpload waits until an import lease not in seen holds an upload in
// progress, and returns that lease's line.
func waitUpload(t *testing.T, client *containerd.Client, ns string, seen []string, exited <-chan error) string {
	t.Helper()
	var lease string
	eventually(t, 2*time.Minute, "an import's upload in progress", func() error {
		select {
		case err := <-exited:
			return fmt.Errorf("imagedrop exited first: %v", err)
		default:
		}
		left, err := harness.Leftovers(context.Background(), client, ns, "overlayfs")
		if err != nil {
			return err
		}
		lease = ""
		uploading := false
		for _, l := range left {
			if strings.HasPrefix(l, "lease ") && strings.Contains(l, "imagedrop.io/lease:import") && !slices.Contains(seen, l) {
				lease = l
			}
			uploading = uploading || strings.HasPrefix(l, "ingest ")
		}
		if lease == "" || !uploading {
			return fmt.Errorf("not yet: %v", left)
		}
		return nil
	})
	return lease
}

// TestImportSIGKILLThenRestart kills `imagedrop import` mid-upload three
// times; each kill leaves a lease and an upload, and the next run releases
// them, until a run imports every file and leaves nothing behind.
func TestImportSIGKILLThenRestart(t *testing.T) {
	c := harness.RequireContainerd(t)
	client := c.Client(t)
	ns := harness.Namespace(t)
	dir := t.TempDir()
	files := []string{
		bigArchive(t, dir, "a.tar.zst", "example.com/crash/a:1", "zstd", 1, 2),
		bigArchive(t, dir, "b.tar", "example.com/crash/b:1", "none", 2, 2),
	}
	env := append(os.Environ(), "IMAGEDROP_CONTAINERD_ADDRESS="+c.Address, "IMAGEDROP_NAMESPACE="+ns)

	var seen []string
	for range 3 {
		cmd := exec.Command(imagedropBin, append([]string{"import", "--workers", "2"}, files...)...)
		cmd.Env = env
		var logs syncBuffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		seen = append(seen, waitUpload(t, client, ns, seen, exited))
		_ = cmd.Process.Kill()
		<-exited
		// What the kill left is visible, then released by the next run.
		if left := leftovers(t, client, ns); len(left) == 0 {
			t.Fatalf("SIGKILL mid-import left nothing to clean up; logs:\n%s", logs.String())
		}
	}

	stdout, stderr, code := imagedrop(t, env[len(os.Environ()):], append([]string{"import"}, files...)...)
	if code != 0 {
		t.Fatalf("import after the kills: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "stale_leases_released") {
		t.Errorf("no stale_leases_released in the logs:\n%s", stderr)
	}
	st := newStore(t, c, ns)
	for _, name := range []string{"example.com/crash/a:1", "example.com/crash/b:1"} {
		if _, ok := st.get(name); !ok {
			t.Errorf("image %s not imported", name)
		}
	}
	if left := leftovers(t, client, ns); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestWatchContainerdKilledMidImport SIGKILLs containerd while `imagedrop
// watch` uploads an archive and starts it again, for several archives in
// turn: each import is retried and succeeds, what the failed attempt held
// is released, not left for the lease to expire, and the reconnects leak
// neither file descriptors nor goroutines.
func TestWatchContainerdKilledMidImport(t *testing.T) {
	ctx := context.Background()
	c := ownContainerd(ctx, t)
	ns := harness.Namespace(t)
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	if err := os.Mkdir(images, 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, c, ns, "--images-dir", images, "--state-file", filepath.Join(dir, "state.json"))
	d.waitReady(30 * time.Second)

	const cycles = 3
	var fds, goroutines []int
	for i := range cycles {
		name := fmt.Sprintf("big%d.tar.zst", i)
		image := fmt.Sprintf("example.com/crash/big%d:1", i)
		path := bigArchive(t, dir, name, image, "zstd", uint64(3+i), 1)
		if err := os.Rename(path, filepath.Join(images, name)); err != nil {
			t.Fatal(err)
		}
		client, err := containerd.New(c.Address)
		if err != nil {
			t.Fatal(err)
		}
		waitUpload(t, client, ns, nil, d.exited)
		_ = client.Close()
		c.Kill()
		if err := c.Restart(ctx); err != nil {
			t.Fatal(err)
		}

		f := d.waitFile(name, "done", 3*time.Minute)
		if f.Attempts < 2 {
			t.Errorf("%s: attempts = %d, want a failed attempt and a retry", name, f.Attempts)
		}
		if _, ok := newStore(t, c, ns).get(image); !ok {
			t.Errorf("image %s not imported", image)
		}
		if left := leftovers(t, c.Client(t), ns); len(left) > 0 {
			t.Errorf("after %s: left behind: %v", name, left)
		}
		fds, goroutines = append(fds, d.fds()), append(goroutines, d.goroutines())
	}
	// The first reconnect may open what later ones reuse; from there on,
	// nothing grows by more than a little slack.
	t.Logf("after each reconnect: %v fds, %v goroutines", fds, goroutines)
	if grown := fds[cycles-1] - fds[0]; grown > 4 {
		t.Errorf("open fds grew by %d over %d reconnects: %v", grown, cycles-1, fds)
	}
	if grown := goroutines[cycles-1] - goroutines[0]; grown > 10 {
		t.Errorf("goroutines grew by %d over %d reconnects: %v", grown, cycles-1, goroutines)
	}
}

// fds counts the open file descriptors of the daemon's process.
func (d *daemon) fds() int {
	d.t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.cmd.Process.Pid))
	if err != nil {
		d.t.Fatal(err)
	}
	return len(ents)
}

// goroutines is the daemon's go_goroutines, from its /metrics.
func (d *daemon) goroutines() int {
	d.t.Helper()
	code, b, err := d.get("/metrics")
	if err != nil || code != http.StatusOK {
		d.t.Fatalf("/metrics: %d %v", code, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				d.t.Fatalf("go_goroutines %q: %v", v, err)
			}
			return n
		}
	}
	d.t.Fatalf("no go_goroutines in /metrics")
	return 0
}
