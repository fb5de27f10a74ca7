package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Registry is a private OCI registry (Debian's docker-registry, the CNCF
// distribution) serving plain HTTP on 127.0.0.1, its storage in a temporary
// directory. It can be stopped and started again on the same port.
type Registry struct {
	// Host is "localhost:PORT": containerd pulls localhost over plain HTTP
	// without any registry configuration.
	Host string
	// URL is "http://127.0.0.1:PORT", for pushing.
	URL string

	t      testing.TB
	bin    string
	dir    string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// RequireRegistry starts a registry that is stopped when the test ends.
// Without the docker-registry binary the test is skipped, or fails under CI.
func RequireRegistry(t testing.TB) *Registry {
	t.Helper()
	if _, err := exec.LookPath("docker-registry"); err != nil {
		if InCI() {
			t.Fatalf("docker-registry is required under CI: %v", err)
		}
		t.Skipf("docker-registry not installed: %v", err)
	}
	dir := t.TempDir()
	r, err := StartRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	r.t = t
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Logf("registry log:\n%s", b)
		}
	})
	return r
}

// StartRegistry starts a registry keeping its configuration, data and log
// in dir, for programs that are not tests (the benchmark). Stop it when done.
func StartRegistry(dir string) (*Registry, error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return nil, fmt.Errorf("docker-registry (run e2e/setup.sh): %w", err)
	}
	addr, err := FreeAddress()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
http:
  addr: %q
`, filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	r := &Registry{Host: "localhost:" + port, URL: "http://" + addr, bin: bin, dir: dir}
	if err := r.start(); err != nil {
		return nil, err
	}
	return r, nil
}

// FreeAddress returns a 127.0.0.1 address with a port nobody listens on now.
func FreeAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func freeAddr(t TB) string {
	t.Helper()
	addr, err := FreeAddress()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Start starts the registry (again) and waits until GET /v2/ answers.
func (r *Registry) Start() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *Registry) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return errors.New("registry already running")
	}
	logf, err := os.OpenFile(filepath.Join(r.dir, "registry.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(r.bin, "serve", filepath.Join(r.dir, "config.yml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	waited := make(chan error, 1)
	if err := startTied(cmd, waited); err != nil {
		return fmt.Errorf("start docker-registry: %w", err)
	}
	exited := make(chan struct{})
	go func() { <-waited; close(exited) }()
	r.cmd, r.exited = cmd, exited

	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(r.URL + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(r.dir, "registry.log"))
			r.cmd, r.exited = nil, nil
			return fmt.Errorf("docker-registry exited during start:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			return errors.New("docker-registry not ready within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pid is the running registry's process ID, 0 when it is stopped.
func (r *Registry) Pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Stop stops the registry; its data stays for the next Start. Stopping a
// stopped registry does nothing.
func (r *Registry) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd, r.exited = nil, nil
}

// Push uploads img as an OCI manifest with gzip layers under ref, a
// reference on this registry without the host ("team/app:1"), and returns
// the manifest's digest.
func (r *Registry) Push(t testing.TB, ref string, img *Image) digest.Digest {
	t.Helper()
	d, err := r.PushImage(ref, img)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// PushImage is Push for programs that are not tests.
func (r *Registry) PushImage(ref string, img *Image) (digest.Digest, error) {
	repo, tag, ok := strings.Cut(ref, ":")
	if !ok {
		return "", fmt.Errorf("push %s: want repository:tag", ref)
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(img.Config), Size: int64(len(img.Config))}
	blobs := [][]byte{img.Config}
	for _, l := range img.Layers {
		gz := gzipBytes(l)
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(gz), Size: int64(len(gz))})
		blobs = append(blobs, gz)
	}
	for _, b := range blobs {
		if err := r.pushBlob(repo, b); err != nil {
			return "", fmt.Errorf("push %s: %w", ref, err)
		}
	}
	mb, _ := json.Marshal(m)
	req, _ := http.NewRequest(http.MethodPut, r.URL+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(mb))
	req.Header.Set("Content-Type", ocispec.MediaTypeImageManifest)
	if err := do(req, http.StatusCreated); err != nil {
		return "", fmt.Errorf("push %s: manifest: %w", ref, err)
	}
	return digest.FromBytes(mb), nil
}

// pushBlob uploads b in one request unless the registry has it.
func (r *Registry) pushBlob(repo string, b []byte) error {
	d := digest.FromBytes(b)
	head, _ := http.NewRequest(http.MethodHead, r.URL+"/v2/"+repo+"/blobs/"+d.String(), nil)
	if do(head, http.StatusOK) == nil {
		return nil
	}
	resp, err := http.Post(r.URL+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("start upload of %s: %s", d, resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("start upload of %s: %w", d, err)
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	put, _ := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(b))
	put.Header.Set("Content-Type", "application/octet-stream")
	if err := do(put, http.StatusCreated); err != nil {
		return fmt.Errorf("upload %s: %w", d, err)
	}
	return nil
}

func do(req *http.Request, want int) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, body)
	}
	return nil
}

// ProxyOptions shape a RegistryProxy.
type ProxyOptions struct {
	// Username and Password, when set, make the proxy demand HTTP basic
	// auth on /v2/, as a registry with htpasswd auth does.
	Username, Password string
	// Hold, when set, is called for each request after it is counted as in
	// flight and before it is forwarded; it may block.
	Hold func(*http.Request)
}

// RegistryProxy is a reverse proxy in front of a registry on 127.0.0.1 that
// counts the repositories with requests in flight, and can demand basic auth.
type RegistryProxy struct {
	// Host is "localhost:PORT".
	Host string

	opts     ProxyOptions
	mu       sync.Mutex
	inFlight map[string]int // repository → requests in flight
	maxRepos int
}

// StartRegistryProxy starts a proxy to r, closed when the test ends.
func StartRegistryProxy(t testing.TB, r *Registry, opts ProxyOptions) *RegistryProxy {
	t.Helper()
	target, err := url.Parse(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	p := &RegistryProxy{Host: "localhost:" + port, opts: opts, inFlight: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := &http.Server{Handler: p.handler(rp), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return p
}

func (p *RegistryProxy) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if p.opts.Username != "" {
			u, pw, ok := req.BasicAuth()
			if !ok || u != p.opts.Username || pw != p.opts.Password {
				w.Header().Set("WWW-Authenticate", `Basic realm="imagedrop-test"`)
				w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
		}
		repo := repository(req.URL.Path)
		p.enter(repo)
		defer p.leave(repo)
		if p.opts.Hold != nil {
			p.opts.Hold(req)
		}
		next.ServeHTTP(w, req)
	})
}

// repository is the repository of a /v2/<name>/(manifests|blobs)/… path,
// or "" for other paths.
func repository(path string) string {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return ""
	}
	for _, sep := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(rest, sep); i > 0 {
			return rest[:i]
		}
	}
	return ""
}

func (p *RegistryProxy) enter(repo string) {
	if repo == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight[repo]++
	p.maxRepos = max(p.maxRepos, len(p.inFlight))
}

func (p *RegistryProxy) leave(repo string) {
	if repo == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inFlight[repo]--; p.inFlight[repo] == 0 {
		delete(p.inFlight, repo)
	}
}

// ReposInFlight is how many repositories have a request in flight now.
func (p *RegistryProxy) ReposInFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.inFlight)
}

// MaxReposInFlight is the most repositories that had requests in flight at
// the same moment: with one pull per image, how many pulls overlapped.
func (p *RegistryProxy) MaxReposInFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxRepos
}
