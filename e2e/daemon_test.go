package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// daemon is a running `imagedrop watch`.
type daemon struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string
	logs   *syncBuffer
	exited chan error
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ownContainerd starts a containerd of the test's own, stopped when the
// test ends (a test that kills or shares it must not use the package's).
func ownContainerd(ctx context.Context, t *testing.T) *harness.Containerd {
	t.Helper()
	c, err := harness.StartContainerd(ctx, "")
	if err != nil {
		if harness.InCI() {
			t.Fatalf("containerd is required under CI: %v", err)
		}
		t.Skip(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

// startDaemon runs imagedrop watch with args against containerd c and
// namespace ns, on a free local port; it is stopped when the test ends.
func startDaemon(t *testing.T, c *harness.Containerd, ns string, args ...string) *daemon {
	t.Helper()
	addr, err := harness.FreeAddress()
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, addr: addr, logs: &syncBuffer{}, exited: make(chan error, 1)}
	all := append([]string{"watch", "--containerd-address", c.Address, "--namespace", ns,
		"--listen-address", d.addr, "--settle", "300ms", "--retry-min", "200ms", "--retry-max", "1s", "--log-level", "debug"}, args...)
	d.cmd = exec.Command(imagedropBin, all...)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("imagedrop logs:\n%s", d.logs)
		}
	})
	return d
}

// stop sends SIGTERM and returns the exit code.
func (d *daemon) stop() int {
	d.t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			d.t.Fatalf("wait: %v", err)
		}
		return 0
	case <-time.After(30 * time.Second):
		d.t.Fatalf("imagedrop did not exit within 30s of SIGTERM")
		return -1
	}
}

func (d *daemon) get(path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.addr+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

type fileStatus struct {
	Path     string          `json:"path"`
	Kind     string          `json:"kind"`
	State    string          `json:"state"`
	Attempts int             `json:"attempts"`
	Images   []string        `json:"images"`
	Error    string          `json:"error"`
	Invalid  bool            `json:"invalid"`
	Detail   json.RawMessage `json:"detail"`
}

type status struct {
	Ready      bool   `json:"ready"`
	StateError string `json:"state_error"`
	Dirs       []struct {
		Path     string `json:"path"`
		Mode     string `json:"mode"`
		Degraded string `json:"degraded"`
	} `json:"dirs"`
	Files []fileStatus `json:"files"`
}

func (d *daemon) status() status {
	d.t.Helper()
	s, err := d.tryStatus()
	if err != nil {
		d.t.Fatal(err)
	}
	return s
}

func (d *daemon) tryStatus() (status, error) {
	var s status
	code, b, err := d.get("/status")
	if err != nil || code != http.StatusOK {
		return s, fmt.Errorf("/status: %d %v", code, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("/status: %w\n%s", err, b)
	}
	return s, nil
}

func (s status) file(path string) (fileStatus, bool) {
	for _, f := range s.Files {
		if f.Path == path {
			return f, true
		}
	}
	return fileStatus{}, false
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemon) waitReady(timeout time.Duration) {
	d.t.Helper()
	eventually(d.t, timeout, "/readyz 200", func() error {
		select {
		case err := <-d.exited:
			d.exited <- err
			return fmt.Errorf("imagedrop exited: %v", err)
		default:
		}
		code, b, err := d.get("/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("%d %s", code, b)
		}
		return nil
	})
}

func (d *daemon) waitFile(path, state string, timeout time.Duration) fileStatus {
	d.t.Helper()
	var got fileStatus
	eventually(d.t, timeout, path+" "+state, func() error {
		s, err := d.tryStatus()
		if err != nil {
			return err
		}
		f, ok := s.file(path)
		if !ok {
			return errors.New("not in /status")
		}
		got = f
		if f.State != state {
			return fmt.Errorf("state %s (attempts %d, error %q)", f.State, f.Attempts, f.Error)
		}
		return nil
	})
	return got
}

// waitAllDone waits until /status holds n files, all done. A slow answer
// on a busy machine is retried.
func (d *daemon) waitAllDone(n int, timeout time.Duration) {
	d.t.Helper()
	eventually(d.t, timeout, fmt.Sprintf("%d files done", n), func() error {
		s, err := d.tryStatus()
		if err != nil {
			return err
		}
		done := 0
		for _, f := range s.Files {
			if f.State == "done" {
				done++
			}
		}
		if done != n {
			return fmt.Errorf("%d of %d done", done, n)
		}
		return nil
	})
}

// store is a test's view of containerd's image store.
type store struct {
	t      *testing.T
	client *containerd.Client
	ctx    context.Context
}

func newStore(t *testing.T, c *harness.Containerd, ns string) store {
	return store{t: t, client: c.Client(t), ctx: namespaces.WithNamespace(context.Background(), ns)}
}

func (s store) get(name string) (images.Image, bool) {
	s.t.Helper()
	img, err := s.client.ImageService().Get(s.ctx, name)
	if errdefs.IsNotFound(err) {
		return images.Image{}, false
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return img, true
}

func (s store) waitImage(name string, timeout time.Duration) images.Image {
	s.t.Helper()
	var img images.Image
	eventually(s.t, timeout, "image "+name, func() error {
		var ok bool
		if img, ok = s.get(name); !ok {
			return errors.New("absent")
		}
		return nil
	})
	return img
}

func writeArchive(t *testing.T, path string, compression string, imgs ...*harness.Image) []byte {
	t.Helper()
	data, err := harness.Compress(harness.DockerSaveBytes(imgs...), compression)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// dropArchive writes an archive beside dir and renames it in, as a careful
// copier (rsync, mv) does.
func dropArchive(t *testing.T, dir, name string, imgs ...*harness.Image) {
	t.Helper()
	tmp := dir + "/." + name + ".partial"
	writeArchive(t, tmp, "none", imgs...)
	if err := os.Rename(tmp, dir+"/"+name); err != nil {
		t.Fatal(err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// watchEnv is what a daemon test needs: the shared containerd, a namespace
// of its own, an images directory (created unless told otherwise) and a
// state file.
type watchEnv struct {
	c      *harness.Containerd
	ns     string
	st     store
	dir    string
	images string
	state  string
}

func newWatchEnv(t *testing.T, createImagesDir bool) *watchEnv {
	t.Helper()
	c := harness.RequireContainerd(t)
	ns := harness.Namespace(t)
	dir := t.TempDir()
	e := &watchEnv{c: c, ns: ns, st: newStore(t, c, ns), dir: dir,
		images: filepath.Join(dir, "images"), state: filepath.Join(dir, "state.json")}
	if createImagesDir {
		if err := os.Mkdir(e.images, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// start runs imagedrop watch on the environment's directory and state file.
func (e *watchEnv) start(t *testing.T, args ...string) *daemon {
	t.Helper()
	return startDaemon(t, e.c, e.ns, append([]string{"--images-dir", e.images, "--state-file", e.state}, args...)...)
}
