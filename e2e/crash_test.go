package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// watch` uploads an archive and starts it again: the import is retried and
// succeeds, and what the failed attempt held is released, not left for the
// lease to expire.
func TestWatchContainerdKilledMidImport(t *testing.T) {
	ctx := context.Background()
	c, err := harness.StartContainerd(ctx, "")
	if err != nil {
		if harness.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	ns := harness.Namespace(t)
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	if err := os.Mkdir(images, 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, c, ns, "--images-dir", images, "--state-file", filepath.Join(dir, "state.json"))
	d.waitReady(30 * time.Second)
	path := bigArchive(t, dir, "big.tar.zst", "example.com/crash/big:1", "zstd", 3, 3)
	if err := os.Rename(path, filepath.Join(images, "big.tar.zst")); err != nil {
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

	f := d.waitFile("big.tar.zst", "done", 3*time.Minute)
	if f.Attempts < 2 {
		t.Errorf("attempts = %d, want a failed attempt and a retry", f.Attempts)
	}
	if _, ok := newStore(t, c, ns).get("example.com/crash/big:1"); !ok {
		t.Error("image not imported")
	}
	if left := leftovers(t, c.Client(t), ns); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
