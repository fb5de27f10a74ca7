package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

// openPTY opens a pseudo-terminal of cols×rows: its master, which the test
// reads, and its slave, the program's stdout and stderr.
func openPTY(t *testing.T, cols, rows uint16) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows}); err != nil {
		t.Fatalf("set pty size: %v", err)
	}
	return m, s
}

var escapeRE = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

// TestImportProgressOnTerminal runs imagedrop import on a real
// pseudo-terminal with an archive and a list whose pull the registry holds:
// the list's progress line is drawn and then erased in place (cursor up,
// erase), the result lines stay, and the last line is the done summary.
func TestImportProgressOnTerminal(t *testing.T) {
	c := harness.RequireContainerd(t)
	reg := harness.RequireRegistry(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll)
	proxy := harness.StartRegistryProxy(t, reg, harness.ProxyOptions{Hold: func(*http.Request) { <-release }})
	suffix := fmt.Sprint(time.Now().UnixNano())
	reg.Push(t, "e2e/progress:"+suffix, harness.NewImage("p", node, map[string]string{"p": suffix}))

	dir := t.TempDir()
	archive, list := filepath.Join(dir, "app.tar"), filepath.Join(dir, "apps.txt")
	img := harness.RandomImage("example.com/progress/app:"+suffix, node, 1, 2, 4<<20)
	if err := os.WriteFile(archive, harness.DockerSaveBytes(img), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(list, []byte(proxy.Host+"/e2e/progress:"+suffix+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	master, slave := openPTY(t, 120, 30)
	cmd := exec.Command(imagedropBin, "import", "--containerd-address", c.Address,
		"--namespace", importer.CRINamespace, archive, list)
	cmd.Env = append(os.Environ(), "TERM=xterm")
	cmd.Stdout, cmd.Stderr = slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = slave.Close()
	var out syncBuffer
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_, _ = io.Copy(&out, master) // ends with EIO when the program exits
	}()

	// The list's line is drawn while its pull is held.
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "apps.txt  running") {
		if time.Now().After(deadline) {
			t.Fatalf("no progress line for the list on the terminal:\n%q", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	releaseAll()
	err := cmd.Wait()
	<-readDone
	got := out.String()
	if err != nil {
		t.Fatalf("imagedrop import: %v\n%q", err, got)
	}
	if !regexp.MustCompile(`\x1b\[[0-9]+A\r\x1b\[J`).MatchString(got) {
		t.Errorf("no cursor-up and erase (an update in place) in:\n%q", got)
	}
	for _, want := range []string{"OK   " + archive, "OK   " + list} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q line in:\n%q", want, got)
		}
	}
	plain := strings.Fields(strings.ReplaceAll(escapeRE.ReplaceAllString(got, ""), "\r", ""))
	text := strings.Join(plain, " ")
	if !regexp.MustCompile(`done: 2 files, [0-9.]+ MiB read in [0-9.]+m?s$`).MatchString(text) {
		t.Errorf("the last line is not the done summary: %q", text[max(0, len(text)-200):])
	}
}

// TestImportPlainOnPipe: with stdout and stderr on pipes there is no escape
// sequence at all, even with a long import, and the summary is a plain line.
func TestImportPlainOnPipe(t *testing.T) {
	c := harness.RequireContainerd(t)
	dir := t.TempDir()
	archive := filepath.Join(dir, "app.tar")
	img := harness.RandomImage("example.com/progress/plain:1", node, 2, 2, 4<<20)
	if err := os.WriteFile(archive, harness.DockerSaveBytes(img), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := imagedrop(t, []string{"TERM=xterm"}, "import", "--containerd-address", c.Address,
		"--namespace", harness.Namespace(t), archive)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if strings.ContainsAny(stdout+stderr, "\x1b\r") {
		t.Errorf("escape sequences or carriage returns on a pipe:\nstdout %q\nstderr %q", stdout, stderr)
	}
	if !strings.HasPrefix(stdout, "OK   "+archive) || strings.Count(stdout, "\n") != 1 {
		t.Errorf("stdout = %q, want one OK line", stdout)
	}
	if !regexp.MustCompile(`(?m)^done: 1 file, [0-9.]+ MiB read in `).MatchString(stderr) {
		t.Errorf("stderr has no done line: %q", stderr)
	}
}
