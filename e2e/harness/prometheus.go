package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Prometheus is a private Prometheus server scraping one target every
// 500 ms, its storage in a temporary directory.
type Prometheus struct {
	URL string // http://127.0.0.1:PORT
}

// StartPrometheus starts Debian's prometheus scraping target (host:port)
// and stops it when the test ends. Without the binary the test is skipped,
// or fails under CI.
func StartPrometheus(t testing.TB, target string) *Prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if InCI() {
			t.Fatalf("prometheus is required under CI: %v", err)
		}
		t.Skipf("prometheus not installed: %v", err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 500ms
  scrape_timeout: 400ms
scrape_configs:
  - job_name: imagedrop
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file", filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path", filepath.Join(dir, "data"), "--web.listen-address", addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	waited := make(chan error, 1)
	if err := startTied(cmd, waited); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { <-waited; close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus log:\n%s", b)
		}
	})
	p := &Prometheus{URL: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(p.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-exited:
			t.Fatalf("prometheus exited during start")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Query evaluates an instant PromQL query whose result is a single sample
// and returns its value; ok is false when the result is empty.
func (p *Prometheus) Query(ctx context.Context, query string) (value float64, ok bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, false, fmt.Errorf("query %q: %w: %s", query, err, body)
	}
	if r.Status != "success" {
		return 0, false, fmt.Errorf("query %q: %s", query, r.Error)
	}
	if len(r.Data.Result) == 0 {
		return 0, false, nil
	}
	if len(r.Data.Result) > 1 {
		return 0, false, fmt.Errorf("query %q: %d series, want 1", query, len(r.Data.Result))
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, true, err
}
