package e2e

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// TestMonitoringOnDaemon loads deploy/monitoring's rules (with every "for"
// cut to 2s) into a real Prometheus scraping a real imagedrop that is fed a
// good and a bad archive. Every metric the rules and the dashboard name is in
// imagedrop's /metrics with those labels, every selector finds series in
// Prometheus, every panel's query answers, and ImagedropFilesFailing fires
// for the bad file and resolves once it is removed.
func TestMonitoringOnDaemon(t *testing.T) {
	m := loadMonitoring(t)
	e := newWatchEnv(t, true)
	d := e.start(t)
	d.waitReady(30 * time.Second)

	groups := m.groups
	for i := range groups {
		for j := range groups[i].Rules {
			if groups[i].Rules[j].For != "" {
				groups[i].Rules[j].For = "2s"
			}
		}
	}
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	writeRules(t, rules, groups)
	prom := harness.StartPrometheus(t, d.addr, rules)

	writeArchive(t, filepath.Join(e.dir, "good.tar"), "none", img("example.com/monitoring/good:1", 1))
	if err := os.WriteFile(filepath.Join(e.dir, "bad.tar.gz"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"good.tar", "bad.tar.gz"} {
		if err := os.Rename(filepath.Join(e.dir, name), filepath.Join(e.images, name)); err != nil {
			t.Fatal(err)
		}
	}
	d.waitFile("good.tar", "done", 30*time.Second)
	d.waitFile("bad.tar.gz", "failed", 30*time.Second)

	ctx := t.Context()
	waitAlert(t, prom, "ImagedropFilesFailing", func(a promAlert) error {
		want := "1 file(s) on node " + d.addr + " have failed"
		if a.State != "firing" || a.Labels["instance"] != d.addr || !strings.Contains(a.Annotations["description"], want) {
			return fmt.Errorf("%+v, want firing with a description saying %q", a, want)
		}
		return nil
	})

	exprs := map[string][]string{}
	for _, r := range m.rules() {
		exprs[r.Alert+r.Record] = append(exprs[r.Alert+r.Record], r.Expr)
	}
	panels := m.panelExprs()
	for title, es := range panels {
		exprs["panel "+title] = append(exprs["panel "+title], es...)
	}
	checkMetricsExposed(t, d, m, exprs)
	// The recording rules have been evaluated by now (the alert's rule group
	// comes after theirs): every selector finds series, and every panel shows
	// something.
	for what, es := range exprs {
		for _, expr := range es {
			sels, _ := selectors(expr)
			for _, s := range sels {
				var series []map[string]string
				if err := prom.API(ctx, "series", url.Values{"match[]": {s.String()}}, &series); err != nil || len(series) == 0 {
					t.Errorf("%s: Prometheus has no series %s (%v)", what, s, err)
				}
			}
		}
	}
	for title, es := range panels {
		for _, expr := range es {
			eventually(t, 10*time.Second, "panel "+title, func() error {
				var r struct {
					Result []any `json:"result"`
				}
				if err := prom.API(ctx, "query", url.Values{"query": {expr}}, &r); err != nil {
					return err
				}
				if len(r.Result) == 0 {
					return fmt.Errorf("%s: empty", expr)
				}
				return nil
			})
		}
	}

	if err := os.Remove(filepath.Join(e.images, "bad.tar.gz")); err != nil {
		t.Fatal(err)
	}
	waitAlert(t, prom, "ImagedropFilesFailing", func(a promAlert) error {
		if a.Name != "" {
			return fmt.Errorf("still %s", a.State)
		}
		return nil
	})
}

type promAlert struct {
	Name        string            `json:"-"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
}

// waitAlert waits until cond accepts the active alert of that name in
// Prometheus's /api/v1/alerts (Name empty when there is none).
func waitAlert(t *testing.T, prom *harness.Prometheus, name string, cond func(promAlert) error) {
	t.Helper()
	eventually(t, 30*time.Second, "alert "+name, func() error {
		var r struct {
			Alerts []promAlert `json:"alerts"`
		}
		if err := prom.API(t.Context(), "alerts", nil, &r); err != nil {
			return err
		}
		var got promAlert
		for _, a := range r.Alerts {
			if a.Labels["alertname"] == name {
				got, got.Name = a, name
			}
		}
		return cond(got)
	})
}

// checkMetricsExposed checks that every metric named by exprs is in the
// daemon's /metrics with the labels they select, apart from the target
// labels Prometheus adds; "up" is Prometheus's own, and names with a colon
// must be recording rules of m.
func checkMetricsExposed(t *testing.T, d *daemon, m monitoring, exprs map[string][]string) {
	t.Helper()
	code, body, err := d.get("/metrics")
	if err != nil || code != 200 {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	exposed, err := expositionSeries(string(body))
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	for _, r := range m.rules() {
		recorded[r.Record] = r.Record != ""
	}
	for what, es := range exprs {
		for _, expr := range es {
			sels, err := selectors(expr)
			if err != nil {
				t.Error(err)
			}
			for _, s := range sels {
				switch {
				case s.name == "up":
				case strings.Contains(s.name, ":"):
					if !recorded[s.name] {
						t.Errorf("%s: %s is no recording rule", what, s.name)
					}
				case !exposedMatch(exposed, s):
					t.Errorf("%s: /metrics has no series %s", what, s)
				}
			}
		}
	}
}

func exposedMatch(exposed []map[string]string, s selector) bool {
	for _, labels := range exposed {
		if labels[model.MetricNameLabel] == s.name && s.matches(labels, "job", "instance") {
			return true
		}
	}
	return false
}

// expositionSeries returns the label sets of every series of a text
// exposition, histograms and summaries expanded into their _bucket, _sum
// and _count series, the name under __name__.
func expositionSeries(body string) ([]map[string]string, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	var out []map[string]string
	for name, f := range families {
		for _, mt := range f.GetMetric() {
			series := func(suffix string, extra ...string) {
				labels := map[string]string{model.MetricNameLabel: name + suffix}
				for _, l := range mt.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				for i := 0; i+1 < len(extra); i += 2 {
					labels[extra[i]] = extra[i+1]
				}
				out = append(out, labels)
			}
			switch {
			case mt.GetHistogram() != nil:
				for _, b := range mt.GetHistogram().GetBucket() {
					series("_bucket", "le", model.FloatString(b.GetUpperBound()).String())
				}
				series("_bucket", "le", "+Inf")
				series("_sum")
				series("_count")
			case mt.GetSummary() != nil:
				series("_sum")
				series("_count")
				series("")
			default:
				series("")
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("/metrics is empty")
	}
	return out, nil
}
