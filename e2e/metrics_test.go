package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// TestPrometheusScrapesDaemon has a real Prometheus scrape the running
// daemon while good and bad files are dropped, and reads the counters back
// through Prometheus's HTTP API; promtool checks the live exposition.
func TestPrometheusScrapesDaemon(t *testing.T) {
	e := newWatchEnv(t, true)
	dir, images := e.dir, e.images
	d := e.start(t, "--extra-registry", "mirror.local:5000")
	d.waitReady(30 * time.Second)
	prom := harness.StartPrometheus(t, d.addr)

	ctx := context.Background()
	waitFor := func(query string, want float64) {
		t.Helper()
		eventually(t, 30*time.Second, query, func() error {
			v, ok, err := prom.Query(ctx, query)
			if err != nil {
				return err
			}
			if !ok || v != want {
				return fmt.Errorf("= %v (present %v), want %v", v, ok, want)
			}
			return nil
		})
	}
	waitFor(`imagedrop_initial_sync_complete`, 1)
	waitFor(`imagedrop_files_processed_total{kind="archive",result="success"}`, 0)

	var archiveBytes int
	for i, name := range []string{"a.tar", "b.tar.zst"} {
		tmp := filepath.Join(dir, name)
		compression := map[string]string{"a.tar": "none", "b.tar.zst": "zstd"}[name]
		data := writeArchive(t, tmp, compression, img(fmt.Sprintf("example.com/prom/%d:1", i), i), img(fmt.Sprintf("example.com/prom/%d:2", i), i+10))
		archiveBytes += len(data)
		if err := os.Rename(tmp, filepath.Join(images, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.tar.gz"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "bad.tar.gz"), filepath.Join(images, "bad.tar.gz")); err != nil {
		t.Fatal(err)
	}

	waitFor(`imagedrop_files_processed_total{kind="archive",result="success"}`, 2)
	waitFor(`imagedrop_images_imported_total`, 4)
	waitFor(`imagedrop_retags_total{result="success"}`, 4)
	waitFor(`imagedrop_pinned_images`, 8)
	waitFor(fmt.Sprintf(`imagedrop_archive_bytes_read_total >= bool %d`, archiveBytes+len("garbage")), 1)
	waitFor(`imagedrop_file_duration_seconds_count{kind="archive"} >= bool 3`, 1)
	// The bad file is bad for good: failing and invalid, and not retried on
	// a timer (the daemon's --retry-max is 1s) until it changes.
	waitFor(`imagedrop_files_failing`, 1)
	waitFor(`imagedrop_files_invalid`, 1)
	waitFor(`imagedrop_files_processed_total{kind="archive",result="failure"}`, 1)
	waitFor(`imagedrop_retries_total`, 0)
	waitFor(`imagedrop_jobs_in_flight`, 0)
	waitFor(`count(imagedrop_build_info{version!="",goversion=~"go.+"})`, 1)

	// promtool lints the live exposition: no errors, no warnings.
	code, body, err := d.get("/metrics")
	if err != nil || code != 200 {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if harness.InCI() {
			t.Fatalf("promtool is required under CI: %v", err)
		}
		t.Skipf("promtool not installed: %v", err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
