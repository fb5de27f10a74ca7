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
// under job "imagedrop", evaluating ruleFiles every 500 ms, and stops it
// when the test ends. Without the binary the test is skipped, or fails under
// CI.
func StartPrometheus(t testing.TB, target string, ruleFiles ...string) *Prometheus {
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
  evaluation_interval: 500ms
rule_files: %s
scrape_configs:
  - job_name: imagedrop
    static_configs:
      - targets: [%q]
`, jsonList(ruleFiles), target)
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
	var result []struct {
		Value [2]any `json:"value"`
	}
	if err := p.API(ctx, "query", url.Values{"query": {query}}, &struct {
		Result any `json:"result"`
	}{&result}); err != nil {
		return 0, false, err
	}
	if len(result) == 0 {
		return 0, false, nil
	}
	if len(result) > 1 {
		return 0, false, fmt.Errorf("query %q: %d series, want 1", query, len(result))
	}
	s, _ := result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, true, err
}

// API calls GET /api/v1/<endpoint> with params and decodes the "data" of a
// successful answer into data.
func (p *Prometheus) API(ctx context.Context, endpoint string, params url.Values, data any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/api/v1/"+endpoint+"?"+params.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	r := struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   any    `json:"data"`
	}{Data: data}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("%s %v: %w: %.200s", endpoint, params, err, body)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s %v: %s", endpoint, params, r.Error)
	}
	return nil
}

// jsonList writes a list of strings as JSON, which YAML reads as a sequence.
func jsonList(s []string) string {
	b, _ := json.Marshal(append([]string{}, s...))
	return string(b)
}
