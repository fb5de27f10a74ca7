package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/imagedrop/imagedrop/metrics"
)

// TestMain fails the package if any test leaves a goroutine behind, which
// covers every server started below.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type fakeProbes struct {
	mu       sync.Mutex
	healthy  error
	ready    error
	degraded string
	readyFn  func(ctx context.Context) error // overrides ready if set
	status   any
}

var _ metrics.Probes = (*fakeProbes)(nil)

func (p *fakeProbes) Healthy() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.healthy
}

func (p *fakeProbes) Ready(ctx context.Context) (string, error) {
	p.mu.Lock()
	ready, degraded, fn := p.ready, p.degraded, p.readyFn
	p.mu.Unlock()
	if fn != nil {
		return "", fn(ctx)
	}
	return degraded, ready
}

func (p *fakeProbes) Status() any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func (p *fakeProbes) setReady(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ready = err
}

// testServer is a metrics.Server running on a free loopback port.
type testServer struct {
	url  string
	addr string
	stop func() error // cancels Run and returns its result
}

func startServer(t *testing.T, cfg metrics.ServerConfig, p metrics.Probes) testServer {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	reg := metrics.NewRegistry()
	metrics.New(reg, "v9.9.9")
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := metrics.NewServer(cfg, log, reg, p)
	if got := srv.Addr(); got != "" {
		t.Fatalf("Addr() before Listen = %q, want empty", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Listen(ctx); err != nil {
		cancel()
		t.Fatalf("Listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("Run did not return within 10s of cancel")
		}
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return testServer{url: "http://" + srv.Addr(), addr: srv.Addr(), stop: stop}
}

type response struct {
	code   int
	header http.Header
	body   string
}

// do sends one request and fails the test if it cannot. Call it from the
// test goroutine only.
func do(t *testing.T, method, url string) response {
	t.Helper()
	resp, err := send(t.Context(), method, url)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// send sends one request without keep-alive, so no client goroutine
// outlives it.
func send(ctx context.Context, method, url string) (response, error) {
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return response{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: string(body)}, nil
}

func TestServerEndpoints(t *testing.T) {
	t.Parallel()
	buildInfo := `imagedrop_build_info{goversion="` + runtime.Version() + `",version="v9.9.9"} 1`
	tests := []struct {
		name       string
		probes     *fakeProbes
		method     string
		path       string
		wantCode   int
		wantType   string   // Content-Type prefix, if set
		wantBody   []string // substrings
		wantEmpty  bool     // body must be empty (HEAD)
		wantHeader map[string]string
	}{
		{
			name: "index", method: http.MethodGet, path: "/",
			wantCode: http.StatusOK, wantType: "text/plain",
			wantBody: []string{"/metrics", "/healthz", "/readyz", "/status"},
		},
		{
			name: "healthy", method: http.MethodGet, path: "/healthz",
			wantCode: http.StatusOK, wantType: "text/plain", wantBody: []string{"ok\n"},
		},
		{
			name: "unhealthy", method: http.MethodGet, path: "/healthz",
			probes:   &fakeProbes{healthy: errors.New("watch loop stopped")},
			wantCode: http.StatusServiceUnavailable, wantType: "text/plain",
			wantBody: []string{"watch loop stopped"},
		},
		{
			name: "ready", method: http.MethodGet, path: "/readyz",
			wantCode: http.StatusOK, wantBody: []string{"ok\n"},
		},
		{
			name: "not ready", method: http.MethodGet, path: "/readyz",
			probes:   &fakeProbes{ready: errors.New("containerd: connection refused")},
			wantCode: http.StatusServiceUnavailable, wantBody: []string{"containerd: connection refused"},
		},
		{
			name: "metrics", method: http.MethodGet, path: "/metrics",
			wantCode: http.StatusOK, wantType: "text/plain",
			wantBody: []string{
				buildInfo,
				`imagedrop_files_processed_total{kind="archive",result="success"} 0`,
				"go_goroutines ",
				"promhttp_metric_handler_requests_total",
			},
		},
		{
			name: "status", method: http.MethodGet, path: "/status",
			probes:   &fakeProbes{status: map[string]int{"files": 2}},
			wantCode: http.StatusOK, wantType: "application/json",
			wantBody: []string{"{\n  \"files\": 2\n}\n"},
		},
		{
			name: "head healthz", method: http.MethodHead, path: "/healthz",
			wantCode: http.StatusOK, wantEmpty: true,
		},
		{
			name: "head metrics", method: http.MethodHead, path: "/metrics",
			wantCode: http.StatusOK, wantEmpty: true,
		},
		{
			name: "post metrics", method: http.MethodPost, path: "/metrics",
			wantCode:   http.StatusMethodNotAllowed,
			wantHeader: map[string]string{"Allow": "GET, HEAD"},
		},
		{
			name: "delete healthz", method: http.MethodDelete, path: "/healthz",
			wantCode: http.StatusMethodNotAllowed,
		},
		{
			name: "put index", method: http.MethodPut, path: "/",
			wantCode: http.StatusMethodNotAllowed,
		},
		{
			name: "unknown path", method: http.MethodGet, path: "/debug/pprof/",
			wantCode: http.StatusNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := tt.probes
			if p == nil {
				p = &fakeProbes{}
			}
			s := startServer(t, metrics.ServerConfig{}, p)
			got := do(t, tt.method, s.url+tt.path)
			if got.code != tt.wantCode {
				t.Errorf("%s %s: status = %d, want %d; body:\n%s", tt.method, tt.path, got.code, tt.wantCode, got.body)
			}
			if ct := got.header.Get("Content-Type"); tt.wantType != "" && !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type = %q, want %s", ct, tt.wantType)
			}
			for _, want := range tt.wantBody {
				if !strings.Contains(got.body, want) {
					t.Errorf("body does not contain %q; body:\n%s", want, got.body)
				}
			}
			if tt.wantEmpty && got.body != "" {
				t.Errorf("body = %q, want empty", got.body)
			}
			for k, want := range tt.wantHeader {
				if v := got.header.Get(k); v != want {
					t.Errorf("header %s = %q, want %q", k, v, want)
				}
			}
		})
	}
}

func TestServerReadyzTransition(t *testing.T) {
	t.Parallel()
	p := &fakeProbes{ready: errors.New("startup files not processed yet")}
	s := startServer(t, metrics.ServerConfig{}, p)

	if got := do(t, http.MethodGet, s.url+"/readyz"); got.code != http.StatusServiceUnavailable {
		t.Errorf("before ready: status = %d, want 503", got.code)
	}
	p.setReady(nil)
	if got := do(t, http.MethodGet, s.url+"/readyz"); got.code != http.StatusOK || got.body != "ok\n" {
		t.Errorf("after ready: status = %d, body %q, want 200 ok", got.code, got.body)
	}
	p.mu.Lock()
	p.degraded = "rescanning 1 dir(s) every 10s"
	p.mu.Unlock()
	got := do(t, http.MethodGet, s.url+"/readyz")
	if want := "ok, degraded: rescanning 1 dir(s) every 10s\n"; got.code != http.StatusOK || got.body != want {
		t.Errorf("degraded: status = %d, body %q, want 200 %q", got.code, got.body, want)
	}
}

// TestServerReadyzTimeout checks that a Ready stuck on containerd is cut off
// after ReadyTimeout instead of hanging the kubelet's probe.
func TestServerReadyzTimeout(t *testing.T) {
	t.Parallel()
	p := &fakeProbes{readyFn: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	s := startServer(t, metrics.ServerConfig{ReadyTimeout: 100 * time.Millisecond}, p)

	start := time.Now()
	got := do(t, http.MethodGet, s.url+"/readyz")
	if got.code != http.StatusServiceUnavailable {
		t.Errorf("status = %d, want 503", got.code)
	}
	if !strings.Contains(got.body, context.DeadlineExceeded.Error()) {
		t.Errorf("body = %q, want it to mention %q", got.body, context.DeadlineExceeded)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("/readyz took %v, want about the 100ms ReadyTimeout", took)
	}
}

func TestServerStatusJSON(t *testing.T) {
	t.Parallel()
	type file struct {
		Path   string    `json:"path"`
		Result string    `json:"result"`
		At     time.Time `json:"at"`
	}
	type status struct {
		Ready bool   `json:"ready"`
		Files []file `json:"files"`
	}
	want := status{Ready: true, Files: []file{
		{Path: "/var/lib/imagedrop/app.tar.zst", Result: "success", At: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
		{Path: "/var/lib/imagedrop/base.txt", Result: "failure", At: time.Date(2025, 1, 2, 3, 5, 0, 0, time.UTC)},
	}}
	s := startServer(t, metrics.ServerConfig{}, &fakeProbes{status: want})

	got := do(t, http.MethodGet, s.url+"/status")
	if got.code != http.StatusOK {
		t.Fatalf("status = %d, want 200", got.code)
	}
	if ct := got.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if !strings.Contains(got.body, "\n  \"ready\": true") {
		t.Errorf("body is not indented:\n%s", got.body)
	}
	var decoded status
	if err := json.Unmarshal([]byte(got.body), &decoded); err != nil {
		t.Fatalf("decode /status: %v\n%s", err, got.body)
	}
	if !reflect.DeepEqual(decoded, want) {
		t.Errorf("/status round trip = %+v, want %+v", decoded, want)
	}
}

func TestServerStatusUnencodable(t *testing.T) {
	t.Parallel()
	s := startServer(t, metrics.ServerConfig{}, &fakeProbes{status: func() {}})
	if got := do(t, http.MethodGet, s.url+"/status"); got.code != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500; body: %s", got.code, got.body)
	}
}

// TestServerShutdown checks that cancelling Run's ctx lets an in-flight
// request finish, stops listening and makes Run return nil.
func TestServerShutdown(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	release := make(chan struct{})
	p := &fakeProbes{readyFn: func(ctx context.Context) error {
		close(entered)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	s := startServer(t, metrics.ServerConfig{ReadyTimeout: 10 * time.Second, WriteTimeout: 20 * time.Second}, p)

	type result struct {
		resp response
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := send(t.Context(), http.MethodGet, s.url+"/readyz")
		inflight <- result{resp, err}
	}()
	select {
	case <-entered:
	case got := <-inflight:
		t.Fatalf("/readyz returned before reaching Ready: %+v", got)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()

	// The listener closes at once, while the request is still in flight.
	waitFor(t, 5*time.Second, "listener to close", func() bool {
		conn, err := net.Dial("tcp", s.addr)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	})
	select {
	case err := <-stopped:
		t.Fatalf("Run returned %v before the in-flight request finished", err)
	default:
	}

	close(release)
	switch got := <-inflight; {
	case got.err != nil:
		t.Errorf("in-flight /readyz: %v", got.err)
	case got.resp.code != http.StatusOK:
		t.Errorf("in-flight /readyz: status = %d, want 200", got.resp.code)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
}

func TestServerRunErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		address func(t *testing.T) string
		wantIs  error
	}{
		{name: "address in use", address: func(t *testing.T) string {
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { busy.Close() })
			return busy.Addr().String()
		}, wantIs: syscall.EADDRINUSE},
		{name: "no port", address: func(*testing.T) string { return "127.0.0.1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			address := tt.address(t)
			srv := metrics.NewServer(metrics.ServerConfig{Address: address}, nil, metrics.NewRegistry(), &fakeProbes{})
			// A Run that wrongly starts serving must not hang the test.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := srv.Run(ctx)
			if err == nil {
				t.Fatal("Run = nil, want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Run = %v, want errors.Is %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), address) {
				t.Errorf("Run = %v, want it to name the address %q", err, address)
			}
		})
	}
}

func TestServerConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     metrics.ServerConfig
		wantErr string // substring; empty means valid
	}{
		{name: "zero value takes defaults", cfg: metrics.ServerConfig{}},
		{name: "defaults", cfg: metrics.DefaultServerConfig()},
		{name: "ephemeral port", cfg: metrics.ServerConfig{Address: "127.0.0.1:0"}},
		{name: "missing port", cfg: metrics.ServerConfig{Address: "localhost"}, wantErr: `metrics address "localhost"`},
		{name: "negative timeout", cfg: metrics.ServerConfig{ReadTimeout: -time.Second}, wantErr: "read timeout -1s: must not be negative"},
		{
			name:    "ready timeout not below write timeout",
			cfg:     metrics.ServerConfig{ReadyTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second},
			wantErr: "ready timeout 30s: must be shorter than write timeout 30s",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("Validate() = nil, want error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
