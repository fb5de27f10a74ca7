package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

const maxUserWatches = "/proc/sys/fs/inotify/max_user_watches"

// TestWatchLimitFallsBackToRescans starts imagedrop while inotify's per-user
// watch limit is reached, as on a busy Kubernetes node: the images directory
// is rescanned instead, /status, /readyz and a metric say so, every file
// dropped meanwhile is imported, and once a watch can be added again the
// directory is watched by inotify again.
func TestWatchLimitFallsBackToRescans(t *testing.T) {
	if os.Geteuid() != 0 {
		if harness.InCI() {
			t.Fatal("lowering fs.inotify.max_user_watches needs root, which CI has")
		}
		t.Skip("needs root to lower fs.inotify.max_user_watches")
	}
	e := newWatchEnv(t, true)
	restore := exhaustInotifyWatches(t)
	d := e.start(t, "--rescan-interval", "500ms")
	eventually(t, 30*time.Second, "images dir in rescan mode", func() error {
		s, err := d.tryStatus()
		if err != nil {
			return err
		}
		if len(s.Dirs) != 1 || s.Dirs[0].Mode != "rescan" || !strings.Contains(s.Dirs[0].Degraded, "no space left on device") {
			return fmt.Errorf("dirs = %+v", s.Dirs)
		}
		return nil
	})
	restore() // at once: the rest of the machine needs its watches
	d.waitReady(30 * time.Second)
	if code, body, err := d.get("/readyz"); err != nil || code != 200 || !strings.Contains(string(body), "degraded: rescanning 1 dir(s)") {
		t.Errorf("/readyz = %d %q %v, want 200 naming the degraded mode", code, body, err)
	}
	if code, _, err := d.get("/healthz"); err != nil || code != 200 {
		t.Errorf("/healthz = %d %v, want 200: rescanning is degraded, not unhealthy", code, err)
	}

	// Files dropped while blind are found by the rescans, which also put the
	// watch back.
	var names []string
	for i := range 3 {
		im := img(fmt.Sprintf("example.com/rescan/f%d:1", i), i)
		dropArchive(t, e.images, fmt.Sprintf("f%d.tar", i), im)
		names = append(names, im.Name)
	}
	for _, n := range names {
		e.st.waitImage(n, 60*time.Second)
	}
	eventually(t, 30*time.Second, "inotify again", func() error {
		s, err := d.tryStatus()
		if err != nil {
			return err
		}
		if s.Dirs[0].Mode != "inotify" {
			return fmt.Errorf("dirs = %+v", s.Dirs)
		}
		return nil
	})
	_, metrics, err := d.get("/metrics")
	if err != nil || !strings.Contains(string(metrics), "imagedrop_watch_degraded_dirs 0") || strings.Contains(string(metrics), "imagedrop_rescans_total 0\n") {
		t.Errorf("/metrics: %v; want imagedrop_watch_degraded_dirs 0 and some rescans:\n%s", err, grepLines(string(metrics), "imagedrop_watch_degraded_dirs", "imagedrop_rescans_total"))
	}
	late := img("example.com/rescan/late:1", 9)
	dropArchive(t, e.images, "late.tar", late)
	e.st.waitImage(late.Name, 30*time.Second)
	if !strings.Contains(d.logs.String(), "msg=watch_failed_rescanning") || !strings.Contains(d.logs.String(), "msg=watch_restored") {
		t.Error("the log does not say the directory was rescanned and then watched again")
	}
}

// exhaustInotifyWatches lowers fs.inotify.max_user_watches to the number of
// watches root holds, then takes any slot left with watches of its own, so
// that the next inotify_add_watch of a root process fails with ENOSPC. The
// returned func, also run when the test ends, restores the limit and frees
// those watches.
func exhaustInotifyWatches(t *testing.T) (restore func()) {
	t.Helper()
	b, err := os.ReadFile(maxUserWatches)
	if err != nil {
		t.Fatal(err)
	}
	orig := strings.TrimSpace(string(b))
	inUse := max(rootInotifyWatches(t), 1)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := os.WriteFile(maxUserWatches, []byte(orig), 0o644); err != nil {
				t.Errorf("restore %s to %s: %v", maxUserWatches, orig, err)
			}
			unix.Close(fd)
		})
	}
	t.Cleanup(restore)
	if err := os.WriteFile(maxUserWatches, []byte(strconv.Itoa(inUse)), 0o644); err != nil {
		t.Fatal(err)
	}
	// The count may be a little off (processes come and go): fill what is
	// left, one directory a watch.
	for i := 0; ; i++ {
		dir := filepath.Join(t.TempDir(), strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE)
		if errors.Is(err, unix.ENOSPC) {
			return restore
		}
		if err != nil || i > 1000 {
			restore()
			t.Fatalf("could not reach the inotify watch limit: %v", err)
		}
	}
}

// rootInotifyWatches counts the inotify watches held by root's processes,
// from /proc/PID/fdinfo, which lists one "inotify wd:" line a watch.
func rootInotifyWatches(t *testing.T) int {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range procs {
		st, err := os.ReadFile(filepath.Join(p, "status"))
		if err != nil || !strings.Contains(string(st), "\nUid:\t0\t") {
			continue
		}
		infos, _ := filepath.Glob(filepath.Join(p, "fdinfo", "*"))
		for _, f := range infos {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			n += strings.Count(string(b), "inotify wd:")
		}
	}
	return n
}

// grepLines returns the lines of s that contain one of subs.
func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
