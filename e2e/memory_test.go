package e2e

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// TestImportLargeArchiveMemory imports a 512 MiB docker save of ordinary
// layers (files of a few KiB to a few MiB, part random, part text), plain
// and zstd-compressed, with the release binary under /usr/bin/time: each
// imports, with a peak RSS under maxRSS (the benchmark shows it flat from 1
// to 4 GiB).
func TestImportLargeArchiveMemory(t *testing.T) {
	c := harness.RequireContainerd(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "large.tar")
	writeLargeArchive(t, plain, "example.com/memory/large:1", 8, 64<<20)
	zst := plain + ".zst"
	if out, err := exec.Command("zstd", "-q", "-1", "-T2", plain, "-o", zst).CombinedOutput(); err != nil {
		t.Fatalf("zstd: %v\n%s", err, out)
	}
	for _, path := range []string{plain, zst} {
		t.Run(filepath.Ext(path), func(t *testing.T) {
			env := []string{"IMAGEDROP_CONTAINERD_ADDRESS=" + c.Address, "IMAGEDROP_NAMESPACE=" + harness.Namespace(t)}
			out, code, kib := peakRSS(t, env, "import", path)
			if code != 0 || !strings.HasPrefix(out, "OK ") {
				t.Errorf("exit %d, stdout %q; want 0 and OK", code, out)
			}
			if kib<<10 > maxRSS {
				t.Errorf("peak RSS = %d KiB, want at most %d KiB", kib, maxRSS>>10)
			}
			t.Logf("peak RSS %d KiB", kib)
		})
	}
}

// peakRSS runs the release binary (`make build`) with args and env under
// /usr/bin/time, and returns its stdout, exit code and peak RSS in KiB.
func peakRSS(t *testing.T, env []string, args ...string) (string, int, int64) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(filepath.Dir(file), "..", "bin", "imagedrop")
	if _, err := os.Stat(bin); err != nil {
		if harness.InCI() {
			t.Fatalf("release binary: %v (run make build)", err)
		}
		t.Skipf("release binary: %v (run make build)", err)
	}
	rss := filepath.Join(t.TempDir(), "rss")
	cmd := exec.Command("/usr/bin/time", append([]string{"-o", rss, "-f", "%M", bin}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, _ := cmd.Output()
	b, err := os.ReadFile(rss)
	if err != nil {
		t.Fatal(err)
	}
	// time writes "Command exited with non-zero status 1" first.
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	kib, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	if err != nil {
		t.Fatalf("max RSS %q: %v", b, err)
	}
	return string(out), cmd.ProcessState.ExitCode(), kib
}

// writeLargeArchive streams to path a docker save of one image of layers
// layers of about size bytes each, never holding a layer in memory.
func writeLargeArchive(t *testing.T, path, name string, layers, size int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	r := rand.New(rand.NewPCG(7, 7))
	var diffIDs, names []string
	for i := range layers {
		files := layerFiles(r, size)
		lsize := int64(1024) // the two zero blocks that end a tar
		for _, n := range files {
			lsize += 512 + (int64(n)+511)/512*512
		}
		lname := fmt.Sprintf("%d/layer.tar", i)
		if err := tw.WriteHeader(&tar.Header{Name: lname, Mode: 0o644, Size: lsize}); err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		lw := tar.NewWriter(io.MultiWriter(tw, h))
		buf := make([]byte, 4<<20)
		for j, n := range files {
			if err := lw.WriteHeader(&tar.Header{Name: fmt.Sprintf("usr/lib/l%d/f%d", i, j), Mode: 0o644, Size: int64(n)}); err != nil {
				t.Fatal(err)
			}
			fillOrdinary(r, buf[:n])
			if _, err := lw.Write(buf[:n]); err != nil {
				t.Fatal(err)
			}
		}
		if err := lw.Close(); err != nil {
			t.Fatal(err)
		}
		diffIDs = append(diffIDs, "sha256:"+hex.EncodeToString(h.Sum(nil)))
		names = append(names, lname)
	}
	config, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": []string{"/bin/true"}}, "rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	sum := sha256.Sum256(config)
	cname := hex.EncodeToString(sum[:]) + ".json"
	manifest, _ := json.Marshal([]map[string]any{{"Config": cname, "RepoTags": []string{name}, "Layers": names}})
	for _, e := range []struct {
		name string
		data []byte
	}{{cname, config}, {"manifest.json", manifest}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

// layerFiles returns the sizes of the files of a layer of about size bytes:
// a few KiB to 4 MiB each.
func layerFiles(r *rand.Rand, size int) []int {
	var files []int
	for total := 0; total < size; {
		n := 1<<10 + r.IntN(4<<20-1<<10)
		files, total = append(files, n), total+n
	}
	return files
}

// fillOrdinary fills b like a file of a real layer: a random half, then a
// repetitive half (text, tables) that compresses well.
func fillOrdinary(r *rand.Rand, b []byte) {
	half := len(b) / 2
	for i := 0; i+8 <= half; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	rest := b[half:]
	n := copy(rest, "the quick brown fox jumps over the lazy dog 0123456789\n")
	for n < len(rest) {
		n += copy(rest[n:], rest[:n])
	}
}
