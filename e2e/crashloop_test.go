package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// TestWatchSIGKILLedTenTimes floods a watched directory with archives and
// SIGKILLs `imagedrop watch` ten times mid-upload, each time at another
// point of an upload, restarting it on the same directory and state file;
// left to finish, the last run imports every file, and nothing the killed
// runs held is left: no lease, no ingest, no active snapshot.
func TestWatchSIGKILLedTenTimes(t *testing.T) {
	e := newWatchEnv(t, true)
	client := e.c.Client(t)
	const files, kills = 48, 10
	staging := t.TempDir()
	names := make([]string, files)
	for i := range files {
		names[i] = fmt.Sprintf("%02d.tar", i)
		compression := "none"
		if i%3 == 0 {
			names[i], compression = names[i]+".zst", "zstd"
		}
		img := harness.RandomImage(fmt.Sprintf("example.com/crashloop/img%02d:1", i), "linux/amd64", uint64(100+i), 1, 4<<20)
		writeArchive(t, filepath.Join(staging, names[i]), compression, img)
	}
	for _, n := range names {
		if err := os.Rename(filepath.Join(staging, n), filepath.Join(e.images, n)); err != nil {
			t.Fatal(err)
		}
	}

	left := 0
	for i := range kills {
		started := time.Now()
		d := e.start(t, "--workers", "2")
		// Spread the kills over an upload: past 0, 1, 2 or 3 MiB of it.
		waitIngest(t, client, e.ns, started, int64(i%4)<<20, d.exited)
		_ = d.cmd.Process.Kill()
		<-d.exited
		if l := leftovers(t, client, e.ns); len(l) > 0 {
			left++
		}
	}
	// Each kill came mid-upload; an upload that ended just before it left
	// nothing, but most leave their lease and ingest to clean up.
	if left == 0 {
		t.Fatalf("none of %d SIGKILLs mid-upload left anything to clean up", kills)
	}
	t.Logf("%d of %d SIGKILLs left a lease, ingest or snapshot", left, kills)

	d := e.start(t, "--workers", "2")
	for _, n := range names {
		d.waitFile(n, "done", 2*time.Minute)
	}
	for i := range files {
		if _, ok := e.st.get(fmt.Sprintf("example.com/crashloop/img%02d:1", i)); !ok {
			t.Errorf("image %d not imported", i)
		}
	}
	if code := d.stop(); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
	// Stopped, the last run holds nothing either.
	if l := leftovers(t, client, e.ns); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// waitIngest waits until an upload written to since `since` has reached
// offset bytes.
func waitIngest(t *testing.T, client *containerd.Client, ns string, since time.Time, offset int64, exited chan error) {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), ns)
	eventually(t, time.Minute, fmt.Sprintf("an upload past %d bytes", offset), func() error {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("imagedrop exited first: %v", err)
		default:
		}
		sts, err := client.ContentStore().ListStatuses(ctx)
		if err != nil {
			return err
		}
		var seen []string
		for _, s := range sts {
			if s.UpdatedAt.After(since) && s.Offset >= offset {
				return nil
			}
			seen = append(seen, fmt.Sprintf("%s at %d", s.Ref, s.Offset))
		}
		return fmt.Errorf("uploads: %s", strings.Join(seen, ", "))
	})
}
