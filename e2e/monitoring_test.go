package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// The monitoring tests check deploy/monitoring: the rules with promtool and
// its unit tests (e2e/testdata/monitoring), the annotations and runbooks of
// the alerts, and the dashboard; monitoring_daemon_test.go runs all of it on
// a real Prometheus scraping a real imagedrop.

const (
	monitoringOverlay = deployDir + "/examples/monitoring"
	runbookPrefix     = "https://github.com/imagedrop/imagedrop/blob/main/README.md#"
)

type rule struct {
	Record      string            `json:"record,omitempty"`
	Alert       string            `json:"alert,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type ruleGroup struct {
	Name  string `json:"name"`
	Rules []rule `json:"rules"`
}

type dashboard struct {
	Title  string `json:"title"`
	Panels []struct {
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// monitoring is deploy/monitoring as kustomize renders it.
type monitoring struct {
	groups    []ruleGroup
	dashboard dashboard
	// dashboardLabels are the labels of the dashboard's ConfigMap, and
	// dashboardJSON its content.
	dashboardLabels map[string]string
	dashboardJSON   string
}

func loadMonitoring(t *testing.T) monitoring {
	t.Helper()
	objs := render(t, monitoringOverlay)
	var m monitoring
	var pr struct {
		Spec struct {
			Groups []ruleGroup `json:"groups"`
		} `json:"spec"`
	}
	find(t, objs, "PrometheusRule", "imagedrop", &pr)
	m.groups = pr.Spec.Groups
	var cm struct {
		Data map[string]string `json:"data"`
	}
	o := find(t, objs, "ConfigMap", "imagedrop-dashboard", &cm)
	m.dashboardLabels = o.Metadata.Labels
	m.dashboardJSON = cm.Data["imagedrop.json"]
	if err := json.Unmarshal([]byte(m.dashboardJSON), &m.dashboard); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	return m
}

func (m monitoring) rules() []rule {
	var out []rule
	for _, g := range m.groups {
		out = append(out, g.Rules...)
	}
	return out
}

// panelExprs returns every panel's expressions with Grafana's variables
// replaced by what they expand to for all nodes.
func (m monitoring) panelExprs() map[string][]string {
	out := map[string][]string{}
	for _, p := range m.dashboard.Panels {
		for _, tg := range p.Targets {
			out[p.Title] = append(out[p.Title], strings.ReplaceAll(tg.Expr, "$instance", ".+"))
		}
	}
	return out
}

// writeRules writes the groups as a Prometheus rule file (JSON is YAML).
func writeRules(t *testing.T, path string, groups []ruleGroup) {
	t.Helper()
	b, err := json.MarshalIndent(map[string]any{"groups": groups}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func promtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if harness.InCI() {
			t.Fatalf("promtool is required under CI: %v", err)
		}
		t.Skipf("promtool not installed: %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestMonitoringRules checks the PrometheusRule with promtool and runs the
// unit tests of e2e/testdata/monitoring, which make each alert fire and not
// fire on synthetic series.
func TestMonitoringRules(t *testing.T) {
	m := loadMonitoring(t)
	dir := t.TempDir()
	writeRules(t, filepath.Join(dir, "rules.yaml"), m.groups)
	promtool(t, dir, "check", "rules", "rules.yaml")

	tests, err := os.ReadFile("testdata/monitoring/alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, dir, "test", "rules", "alerts_test.yaml")

	firing, quiet := unitTestCases(tests)
	for _, r := range m.rules() {
		if r.Alert == "" {
			continue
		}
		if !firing[r.Alert] || !quiet[r.Alert] {
			t.Errorf("%s: unit tests make it fire %v, stay quiet %v; want both", r.Alert, firing[r.Alert], quiet[r.Alert])
		}
	}
}

// unitTestCases returns which alerts the promtool unit tests expect to fire
// at some evaluation, and which to stay quiet ("exp_alerts: []").
func unitTestCases(tests []byte) (firing, quiet map[string]bool) {
	firing, quiet = map[string]bool{}, map[string]bool{}
	var alert string
	sc := bufio.NewScanner(bytes.NewReader(tests))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if name, ok := strings.CutPrefix(line, "alertname:"); ok {
			alert = strings.TrimSpace(name)
		} else if v, ok := strings.CutPrefix(line, "exp_alerts:"); ok && alert != "" {
			if strings.TrimSpace(v) == "[]" {
				quiet[alert] = true
			} else {
				firing[alert] = true
			}
		}
	}
	return firing, quiet
}

// TestMonitoringAlertsAnnotated checks that every alert has a severity, a
// summary, a description naming the node, and a runbook that README.md has.
func TestMonitoringAlertsAnnotated(t *testing.T) {
	m := loadMonitoring(t)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := markdownAnchors(readme)
	var alerts int
	for _, r := range m.rules() {
		if r.Alert == "" {
			continue
		}
		alerts++
		if s := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
			t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, s)
		}
		if r.Annotations["summary"] == "" {
			t.Errorf("%s: no summary", r.Alert)
		}
		// Only the alert for no target at all has no node to name.
		if d := r.Annotations["description"]; r.Alert != "ImagedropAbsent" && !strings.Contains(d, "{{ $labels.instance }}") {
			t.Errorf("%s: description does not name the node: %q", r.Alert, d)
		}
		anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookPrefix)
		if want := "alert-" + strings.ToLower(r.Alert); !ok || anchor != want {
			t.Errorf("%s: runbook_url %q, want %s%s", r.Alert, r.Annotations["runbook_url"], runbookPrefix, want)
		} else if !anchors[anchor] {
			t.Errorf("%s: README.md has no heading for #%s", r.Alert, anchor)
		}
	}
	if alerts == 0 {
		t.Fatal("no alerts rendered")
	}
}

// markdownAnchors returns the anchors GitHub makes of a document's headings.
func markdownAnchors(doc []byte) map[string]bool {
	anchors := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(string(doc), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.TrimSpace(strings.TrimLeft(h, "#"))
			anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}
	return anchors
}

// TestMonitoringDashboard checks that the dashboard's ConfigMap is what
// Grafana's sidecar loads, that it holds deploy/monitoring/dashboard.json,
// that it has the panels an operator looks for, and that every panel's
// expression parses (promtool, as a recording rule).
func TestMonitoringDashboard(t *testing.T) {
	m := loadMonitoring(t)
	if got := m.dashboardLabels["grafana_dashboard"]; got != "1" {
		t.Errorf("ConfigMap label grafana_dashboard = %q, want \"1\"", got)
	}
	file, err := os.ReadFile(deployDir + "/monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if m.dashboardJSON != string(file) {
		t.Errorf("the ConfigMap does not hold deploy/monitoring/dashboard.json")
	}
	exprs := m.panelExprs()
	for _, want := range []string{
		"Files processed by kind and result", "File duration", "Archive bytes read",
		"Queue depth and jobs in flight", "Failing files", "Pinned images",
		"Image pulls by result", "Image pull duration", "Nodes",
	} {
		if len(exprs[want]) == 0 {
			t.Errorf("no panel %q with a query", want)
		}
	}
	var check []ruleGroup
	for i, p := range m.dashboard.Panels {
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %q, want the ${datasource} variable", p.Title, p.Datasource.UID)
		}
		g := ruleGroup{Name: p.Title}
		for j, e := range exprs[p.Title] {
			g.Rules = append(g.Rules, rule{Record: fmt.Sprintf("panel:%d:%d", i, j), Expr: e})
		}
		check = append(check, g)
	}
	dir := t.TempDir()
	writeRules(t, filepath.Join(dir, "panels.yaml"), check)
	promtool(t, dir, "check", "rules", "panels.yaml")
}
