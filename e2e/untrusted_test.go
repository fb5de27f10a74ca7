package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

// Secrets planted where imagedrop must never show them.
const (
	hostSecret = "imagedrop-e2e-host-secret-91ad"    // in a host file outside the images directory
	pullSecret = "imagedrop-e2e-pull-password-7c2f"  // the password in --pull-auth
	listSecret = "imagedrop-e2e-list-secret-3b8e0d1" // on lines of a list, where nothing quotes it
)

// leaked returns which planted secret, plain or base64, s holds.
func leaked(s string) string {
	for _, secret := range []string{hostSecret, pullSecret, listSecret,
		base64.StdEncoding.EncodeToString([]byte("e2e:" + pullSecret))} {
		if strings.Contains(s, secret) {
			return secret
		}
	}
	return ""
}

func mkfifo(t *testing.T, path string) string {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestImportCommandFIFO: imagedrop import of a named pipe, or of a symlink
// to one, fails at once with the reason; it does not block in open(2).
func TestImportCommandFIFO(t *testing.T) {
	c := harness.RequireContainerd(t)
	dir := t.TempDir()
	pipe := mkfifo(t, filepath.Join(dir, "pipe.tar"))
	link := filepath.Join(dir, "link.txt")
	symlink(t, pipe, link)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, imagedropBin, "import", "--containerd-address", c.Address,
		"--namespace", importer.CRINamespace, pipe, link)
	out, err := cmd.Output()
	if ctx.Err() != nil {
		t.Fatalf("imagedrop import of a FIFO still running after a minute: %s", out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1\n%s", err, out)
	}
	for _, p := range []string{pipe, link} {
		want := fmt.Sprintf("FAIL %s: import %s: is a named pipe: not a regular file (not read)", p, p)
		if !strings.Contains(string(out), want) {
			t.Errorf("output %q: want a line %q", out, want)
		}
	}
}

// TestWatchUntrustedFiles plants secrets in a host file reached by
// symlinks, in the --pull-auth file and on list lines, and files that must
// not be read (symlinks out, a hard link, FIFOs), beside a good archive and
// list: the good ones are imported, every bad one fails with its reason,
// no worker blocks, and no secret shows in the logs, /status, /metrics, the
// state file or containerd's log.
func TestWatchUntrustedFiles(t *testing.T) {
	c := harness.RequireContainerd(t)
	reg := harness.RequireRegistry(t)
	dir := t.TempDir()
	images, host := filepath.Join(dir, "images"), filepath.Join(dir, "host")
	for _, d := range []string{images, host} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	suffix := fmt.Sprint(time.Now().UnixNano())
	pulled := harness.NewImage("untrusted", node, map[string]string{"u": suffix})
	reg.Push(t, "e2e/untrusted:"+suffix, pulled)
	ref := reg.Host + "/e2e/untrusted:" + suffix

	shadow := writeFile(t, filepath.Join(host, "shadow"), "root:"+hostSecret+":19000:0:99999:7:::\n")
	auth := writeFile(t, filepath.Join(host, "config.json"), fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`,
		reg.Host, base64.StdEncoding.EncodeToString([]byte("e2e:"+pullSecret))))
	hostname := writeFile(t, filepath.Join(host, "hostname"), hostSecret+"\n")
	symlink(t, shadow, filepath.Join(images, "shadow.txt"))
	symlink(t, "../host/shadow", filepath.Join(images, "relative.txt"))
	symlink(t, auth, filepath.Join(images, "auth.txt"))
	if err := os.Link(hostname, filepath.Join(images, "hostname.txt")); err != nil {
		t.Fatal(err)
	}
	symlink(t, mkfifo(t, filepath.Join(host, "pipe")), filepath.Join(images, "pipe-out.tar"))
	symlink(t, mkfifo(t, filepath.Join(images, ".pipe")), filepath.Join(images, "pipe-in.tar"))
	writeFile(t, filepath.Join(images, "list.txt"), fmt.Sprintf("# token %s\n%s\n%s %s\nbad!/%s%s\n",
		listSecret, ref, ref, listSecret, strings.Repeat("x", 40), listSecret))
	good := img("example.com/untrusted/good:1", 1)
	writeArchive(t, filepath.Join(images, "good.tar"), "none", good)

	st := newStore(t, c, importer.CRINamespace)
	state := filepath.Join(dir, "state.json")
	d := startDaemon(t, c, importer.CRINamespace, "--images-dir", images, "--state-file", state, "--pull-auth", auth)
	d.waitFile("good.tar", "done", 60*time.Second)
	st.waitImage(good.Name, 5*time.Second)
	for name, want := range map[string]string{
		"shadow.txt":   "resolves outside the images directory (not read)",
		"relative.txt": "resolves outside the images directory (not read)",
		"auth.txt":     "resolves outside the images directory (not read)",
		"hostname.txt": "has other hard links (not read",
		"list.txt":     "2 of 3 references failed",
	} {
		if f := d.waitFile(name, "failed", 60*time.Second); !strings.Contains(f.Error, want) {
			t.Errorf("%s: error %q, want it to say %q", name, f.Error, want)
		}
	}
	st.waitImage(ref, 5*time.Second)
	s := d.status()
	for _, f := range s.Files {
		if f.State == "running" && strings.HasPrefix(filepath.Base(f.Path), "pipe") {
			t.Errorf("%s is running: a FIFO blocked a worker", f.Path)
		}
	}
	_, statusBody, err := d.get("/status")
	if err != nil {
		t.Fatal(err)
	}
	_, metricsBody, err := d.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(metricsBody), images) || strings.Contains(string(metricsBody), good.Name) {
		t.Errorf("/metrics names a path or an image:\n%s", metricsBody)
	}
	if code := d.stop(); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	stateBody, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"/status": string(statusBody), "/metrics": string(metricsBody),
		"logs": d.logs.String(), "state file": string(stateBody), "containerd's log": c.Logs()} {
		if s := leaked(text); s != "" {
			t.Errorf("%s holds the secret %q", what, s)
		}
	}
}

// TestWatchSymlinkSwappedToFIFO swaps a symlink between an archive and a
// FIFO, a bounded number of times, while the daemon watches: no worker
// ever blocks, the archive is imported, and SIGTERM ends the daemon.
func TestWatchSymlinkSwappedToFIFO(t *testing.T) {
	e := newWatchEnv(t, true)
	a := img("example.com/untrusted/swap:1", 1)
	writeArchive(t, filepath.Join(e.images, ".real.tar"), "none", a)
	pipe := mkfifo(t, filepath.Join(e.images, ".pipe"))
	link := filepath.Join(e.images, "swap.tar")
	d := e.start(t, "--settle", "20ms")
	d.waitReady(30 * time.Second)
	for i := range 40 {
		target := ".real.tar"
		if i%2 == 1 {
			target = filepath.Base(pipe)
		}
		tmp := filepath.Join(e.images, fmt.Sprintf(".swap-%d", i))
		symlink(t, target, tmp)
		if err := os.Rename(tmp, link); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	final := filepath.Join(e.images, ".swap-final")
	symlink(t, ".real.tar", final)
	if err := os.Rename(final, link); err != nil {
		t.Fatal(err)
	}
	d.waitFile("swap.tar", "done", 60*time.Second)
	e.st.waitImage(a.Name, 5*time.Second)
	if code := d.stop(); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
}

// TestWatchHugeList: a list of 20 000 references fails on
// --max-list-references before any pull, and /status, the log and the
// state file stay small (it gave a 14 MB /status and a 5 MB log line).
func TestWatchHugeList(t *testing.T) {
	c := harness.RequireContainerd(t)
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	if err := os.Mkdir(images, 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&b, "registry.invalid/huge/image-%d:1\n", i)
	}
	writeFile(t, filepath.Join(images, "huge.txt"), b.String())
	state := filepath.Join(dir, "state.json")
	d := startDaemon(t, c, importer.CRINamespace, "--images-dir", images, "--state-file", state,
		"--max-list-size", "2Mi")
	f := d.waitFile("huge.txt", "failed", 60*time.Second)
	if want := "too many references: more than 1000 (--max-list-references)"; !strings.Contains(f.Error, want) {
		t.Errorf("error %q, want it to say %q", f.Error, want)
	}
	_, body, err := d.get("/status")
	if err != nil {
		t.Fatal(err)
	}
	if code := d.stop(); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	stateBody, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	longest := 0
	for _, l := range strings.Split(d.logs.String(), "\n") {
		longest = max(longest, len(l))
	}
	if len(body) > 16<<10 || len(stateBody) > 16<<10 || longest > 4<<10 {
		t.Errorf("/status %d bytes, state file %d bytes, longest log line %d bytes; want at most 16 KiB, 16 KiB, 4 KiB",
			len(body), len(stateBody), longest)
	}
	if strings.Contains(d.logs.String(), "image-999") {
		t.Errorf("the log names the list's references; it must not")
	}
}
