package e2e

import (
	"encoding/json"
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

// configMapDir lays out files as a kubelet ConfigMap volume does: the data
// in a timestamped directory, ..data pointing at it, and each visible name a
// symlink through ..data. Each call swaps ..data atomically.
func configMapDir(t *testing.T, dir string, version int, files map[string]string) {
	t.Helper()
	data := filepath.Join(dir, fmt.Sprintf("..2026_11_26_00_00_%02d.%d", version, version))
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(data, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(data), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestWatchListFromConfigMap runs the daemon on a ConfigMap-style list of
// images in a real registry: the list is pulled through the CRI with
// per-reference results in /status, and when the ConfigMap is updated to
// drop a reference, that image is unpinned.
func TestWatchListFromConfigMap(t *testing.T) {
	c := harness.RequireContainerd(t)
	reg := harness.RequireRegistry(t)
	st := newStore(t, c, importer.CRINamespace)
	suffix := fmt.Sprint(time.Now().UnixNano())
	a := harness.NewImage("a", node, map[string]string{"a": suffix})
	b := harness.NewImage("b", node, map[string]string{"b": suffix})
	reg.Push(t, "e2e/a:"+suffix, a)
	reg.Push(t, "e2e/b:"+suffix, b)
	refA, refB := reg.Host+"/e2e/a:"+suffix, reg.Host+"/e2e/b:"+suffix

	dir := t.TempDir()
	lists := filepath.Join(dir, "lists")
	if err := os.Mkdir(lists, 0o755); err != nil {
		t.Fatal(err)
	}
	configMapDir(t, lists, 1, map[string]string{"images.txt": fmt.Sprintf(
		"# node images\r\n%s\r\n%s   # the second\r\n\r\nNot A Valid Reference!\r\n%s/e2e/missing:%s\r\n", refA, refB, reg.Host, suffix)})

	d := startDaemon(t, c, importer.CRINamespace, "--images-dir", lists, "--state-file", filepath.Join(dir, "state.json"),
		"--extra-registry", "mirror.local:5000")
	f := d.waitFile("images.txt", "failed", 60*time.Second)
	if !containsAll(f.Error, "images.txt:5", "images.txt:6") {
		t.Errorf("error %q does not name the invalid line 5 and the missing image on line 6", f.Error)
	}
	var detail struct {
		References []importer.ReferenceResult `json:"references"`
	}
	if err := json.Unmarshal(f.Detail, &detail); err != nil {
		t.Fatalf("detail: %v\n%s", err, f.Detail)
	}
	outcomes := map[int]string{}
	for _, r := range detail.References {
		outcomes[r.Line] = r.Outcome
	}
	want := map[int]string{2: "pulled", 3: "pulled", 5: "failure", 6: "failure"}
	for line, o := range want {
		if outcomes[line] != o {
			t.Errorf("line %d outcome = %q, want %q (all: %+v)", line, outcomes[line], o, detail.References)
		}
	}
	for _, n := range []string{refA, refB, "mirror.local:5000/e2e/a:" + suffix} {
		img := st.waitImage(n, 5*time.Second)
		if img.Labels[importer.LabelPinned] != importer.LabelPinnedValue || img.Labels[importer.LabelSource] != "images.txt" {
			t.Errorf("%s labels = %v, want pinned from images.txt", n, img.Labels)
		}
	}

	// The ConfigMap is updated: b and the bad lines are gone.
	configMapDir(t, lists, 2, map[string]string{"images.txt": refA + "\n"})
	d.waitFile("images.txt", "done", 30*time.Second)
	eventually(t, 10*time.Second, "b unpinned", func() error {
		img, ok := st.get(refB)
		if !ok {
			t.Fatalf("%s was deleted; imagedrop must only unpin", refB)
		}
		if _, pinned := img.Labels[importer.LabelPinned]; pinned {
			return errors.New("still pinned")
		}
		return nil
	})
	if img, _ := st.get(refA); img.Labels[importer.LabelPinned] != importer.LabelPinnedValue {
		t.Errorf("%s lost its pin: %v", refA, img.Labels)
	}
	_, m, err := d.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	// Each image was pulled once; the retries of the failed file and the
	// update found them present (how often depends on timing).
	for _, line := range []string{`imagedrop_image_pulls_total{result="pulled"} 2`,
		`imagedrop_files_processed_total{kind="list",result="success"} 1`} {
		if !strings.Contains(string(m), line) {
			t.Errorf("/metrics lacks %q:\n%s", line, grep(string(m), "imagedrop_"))
		}
	}
	if strings.Contains(string(m), `imagedrop_image_pulls_total{result="present"} 0`) {
		t.Errorf("the update did not count a present image:\n%s", grep(string(m), "imagedrop_image_pulls_total"))
	}
	if code := d.stop(); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
}
