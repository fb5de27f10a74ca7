// Package harness starts the real services imagedrop's tests run against
// (containerd with its CRI plugin, an OCI registry, Prometheus), each in a
// private temporary directory on 127.0.0.1, and builds test images in code.
package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
)

// EnvContainerd names the containerd binary tests start; the default is the
// first containerd on PATH.
const EnvContainerd = "IMAGEDROP_TEST_CONTAINERD"

// Containerd is a private containerd: its own root, state, socket and config
// in one temporary directory, no TCP listener.
type Containerd struct {
	Address string // unix socket path
	Debug   string // unix socket of its debug server (/debug/pprof/…)
	Dir     string
	Version string // "1.6.20~ds1", "v2.4.2"
	Major   int    // 1 or 2

	bin, config string // what launch runs
	cmd         *exec.Cmd
	exited      chan error
}

// StartContainerd starts the containerd binary bin and waits until it answers.
func StartContainerd(ctx context.Context, bin string) (*Containerd, error) {
	return StartContainerdIn(ctx, bin, "")
}

// StartContainerdIn is StartContainerd with containerd's directory (root,
// state, socket) made under parent instead of the default temporary
// directory.
func StartContainerdIn(ctx context.Context, bin, parent string) (*Containerd, error) {
	return startContainerd(ctx, bin, parent, 0)
}

// StartContainerdGroup is StartContainerd with containerd's socket owned by
// group gid ([grpc] gid in its config, mode 0660), and its directory open to
// other users, so a process that is not root reaches the socket exactly when
// it is in that group.
func StartContainerdGroup(ctx context.Context, bin string, gid int) (*Containerd, error) {
	return startContainerd(ctx, bin, "", gid)
}

func startContainerd(ctx context.Context, bin, parent string, gid int) (*Containerd, error) {
	if bin == "" {
		bin = os.Getenv(EnvContainerd)
	}
	if bin == "" {
		bin = "containerd"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("containerd binary: %w (run e2e/setup.sh, or set %s)", err, EnvContainerd)
	}
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w", path, err)
	}
	version, major := parseContainerdVersion(string(out))

	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp(parent, "idctr-")
	if err != nil {
		return nil, err
	}
	c := &Containerd{Address: filepath.Join(dir, "containerd.sock"), Debug: filepath.Join(dir, "debug.sock"), Dir: dir, Version: version, Major: major}
	if err := os.MkdirAll(filepath.Join(dir, "cni"), 0o755); err != nil {
		return nil, err
	}
	config := containerdConfig(dir, major)
	if gid > 0 {
		if err := os.Chmod(dir, 0o711); err != nil {
			return nil, err
		}
		grpc := fmt.Sprintf("[grpc]\n  address = %q\n", c.Address)
		config = strings.Replace(config, grpc, grpc+fmt.Sprintf("  gid = %d\n", gid), 1)
	}
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return nil, err
	}
	c.bin, c.config = path, cfg
	if err := c.launch(ctx); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// launch starts containerd in c's directory, its log appended to, and waits
// until it answers.
func (c *Containerd) launch(ctx context.Context) error {
	logf, err := os.OpenFile(filepath.Join(c.Dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()

	cmd := exec.Command(c.bin, "--config", c.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The shim of the same build comes first, so containers can run too.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(c.bin)+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.exited = make(chan error, 1)
	if err := startTied(cmd, c.exited); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	c.cmd = cmd
	if err := c.waitReady(ctx, 30*time.Second); err != nil {
		return fmt.Errorf("%w\n--- containerd log ---\n%s", err, c.Logs())
	}
	return nil
}

// Kill SIGKILLs containerd (its process group) and waits for it to exit;
// its directory stays, so Restart picks up its state as a node's containerd
// would after a crash.
func (c *Containerd) Kill() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	err := <-c.exited
	c.exited <- err // for Stop, or another Kill
}

// Restart starts containerd again in its directory after Kill, at the same
// socket, and waits until it answers.
func (c *Containerd) Restart(ctx context.Context) error {
	return c.launch(ctx)
}

func (c *Containerd) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-c.exited:
			c.exited <- err
			return fmt.Errorf("containerd exited during start: %v", err)
		default:
		}
		if _, err := os.Stat(c.Address); err == nil {
			cl, err := containerd.New(c.Address, containerd.WithTimeout(2*time.Second))
			if err == nil {
				_, err = cl.Version(ctx)
				_ = cl.Close()
				if err == nil {
					return nil
				}
			}
			last = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("containerd not ready after %s: %v", timeout, last)
}

// Pid is containerd's process ID, 0 before it started.
func (c *Containerd) Pid() int {
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Stop ends containerd and removes its directory.
func (c *Containerd) Stop() error {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.exited
		}
	}
	return os.RemoveAll(c.Dir)
}

// Logs returns what containerd wrote so far.
func (c *Containerd) Logs() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "containerd.log"))
	return string(b)
}

// Client returns a client closed when the test ends.
func (c *Containerd) Client(t testing.TB) *containerd.Client {
	t.Helper()
	cl, err := containerd.New(c.Address)
	if err != nil {
		t.Fatalf("containerd client: %v", err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

var versionRE = regexp.MustCompile(`\s(v?\d+)\.(\d+)\.\d+\S*`)

func parseContainerdVersion(out string) (version string, major int) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return strings.TrimSpace(out), 1
	}
	if strings.TrimPrefix(m[1], "v") == "2" {
		major = 2
	} else {
		major = 1
	}
	return strings.TrimSpace(m[0]), major
}

// containerdConfig keeps every path inside dir, turns off TCP, NRI and
// anything that would touch the host's containerd.
func containerdConfig(dir string, major int) string {
	if major >= 2 {
		return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = %[7]q
[plugins.'io.containerd.internal.v1.opt']
  path = %[5]q
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
[plugins.'io.containerd.cri.v1.runtime']
  # This VM refuses negative oom_score_adj writes (the CRI gives sandboxes -998).
  restrict_oom_score_adj = true
  # Pod network namespaces in the state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ['/usr/lib/cni']
  conf_dir = %[6]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "containerd.sock"),
			filepath.Join(dir, "ttrpc.sock"), filepath.Join(dir, "opt"), filepath.Join(dir, "cni"), filepath.Join(dir, "debug.sock"))
	}
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = %[7]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[6]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "containerd.sock"),
		filepath.Join(dir, "ttrpc.sock"), filepath.Join(dir, "opt"), filepath.Join(dir, "cni"), filepath.Join(dir, "debug.sock"))
}

// InCI reports whether tests run under CI, where a missing service fails.
func InCI() bool { return os.Getenv("CI") == "true" }

var shared struct {
	once sync.Once
	c    *Containerd
	err  error
}

// Main runs a test binary with one containerd shared by its tests (each test
// uses its own namespace) and stops it at the end. Use it from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.c != nil {
		_ = shared.c.Stop()
	}
	return code
}

// RequireContainerd returns the shared containerd, starting it on first use.
// When it cannot start, the test is skipped, or fails under CI.
func RequireContainerd(t testing.TB) *Containerd {
	t.Helper()
	shared.once.Do(func() {
		shared.c, shared.err = StartContainerd(context.Background(), "")
	})
	if shared.err != nil {
		if InCI() {
			t.Fatalf("containerd is required under CI: %v", shared.err)
		}
		t.Skipf("containerd not available: %v", shared.err)
	}
	return shared.c
}

// Namespace returns a containerd namespace unique to the test.
func Namespace(t testing.TB) string {
	s := strings.ToLower(t.Name())
	s = regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(s, "-")
	s = strings.Trim(s, "-")
	if len(s) > 60 {
		s = s[len(s)-60:]
		s = strings.TrimLeft(s, "-")
	}
	return fmt.Sprintf("t-%s-%d", s, time.Now().UnixNano()%100000)
}
