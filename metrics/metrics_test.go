package metrics

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fixedNow is the clock of the golden scenarios.
var fixedNow = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestMetrics(t *testing.T) (*prometheus.Registry, *Metrics) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m := New(reg, "v1.2.3")
	m.now = func() time.Time { return fixedNow }
	return reg, m
}

// imagedropFamilies gathers the imagedrop_* families of g except
// imagedrop_build_info, whose goversion label depends on the toolchain.
func imagedropFamilies(g prometheus.Gatherer) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		var out []*dto.MetricFamily
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), namespace+"_") && mf.GetName() != namespace+"_build_info" {
				out = append(out, mf)
			}
		}
		return out, err
	})
}

// formatText encodes everything g gathers in the Prometheus text format.
// (testutil.GatherAndFormat without names encodes nothing.)
func formatText(t *testing.T, g prometheus.Gatherer) []byte {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestExposition(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		golden string
		drive  func(m *Metrics)
	}{
		{
			// Every series exists, at zero, before anything happened.
			name:   "fresh",
			golden: "fresh.prom",
			drive:  func(*Metrics) {},
		},
		{
			name:   "scenario",
			golden: "scenario.prom",
			drive: func(m *Metrics) {
				m.SetQueueDepth(4)
				m.SetQueueDepth(3)
				m.JobStarted()
				m.JobStarted()
				m.JobFinished()

				m.FileProcessed(KindArchive, ResultSuccess, 90*time.Second)
				m.BytesRead(1 << 30)
				m.ImagesImported(2)
				m.FileProcessed(KindArchive, ResultSuccess, 200*time.Millisecond)
				m.BytesRead(512)
				m.ImagesImported(1)
				m.Retagged(ResultSuccess)
				m.Retagged(ResultSuccess)
				m.Retagged(ResultFailure)
				m.SetPinnedImages(3)
				m.Verified("signature", "verified")
				m.Verified("signature", "tampered")
				m.Verified("checksum", "verified")

				m.ImagePulled(PullPulled, 40*time.Second)
				m.ImagePulled(PullPresent, 10*time.Millisecond) // count only
				m.ImagePulled(PullFailure, 3*time.Second)
				m.FileProcessed(KindList, ResultFailure, 43*time.Second)
				m.Retried()
				m.SetFilesFailing(1, 1)

				m.FileProcessed(KindList, ResultSkipped, time.Millisecond) // count only
				m.Unpinned(1)
				m.SetPinnedImages(2)
				m.InitialSyncComplete()
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg, m := newTestMetrics(t)
			tt.drive(m)

			path := filepath.Join("testdata", tt.golden)
			g := imagedropFamilies(reg)
			if *update {
				if err := os.WriteFile(path, formatText(t, g), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if err := testutil.GatherAndCompare(g, bytes.NewReader(want)); err != nil {
				t.Errorf("exposition differs from %s (run with -update if intended):\n%v", path, err)
			}
		})
	}
}

func TestBuildInfo(t *testing.T) {
	t.Parallel()
	reg, _ := newTestMetrics(t)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found *dto.MetricFamily
	for _, mf := range mfs {
		if mf.GetName() == "imagedrop_build_info" {
			found = mf
		}
	}
	if found == nil {
		t.Fatal("imagedrop_build_info not exposed")
	}
	if got := len(found.GetMetric()); got != 1 {
		t.Fatalf("imagedrop_build_info has %d series, want 1", got)
	}
	metric := found.GetMetric()[0]
	if got := metric.GetGauge().GetValue(); got != 1 {
		t.Errorf("imagedrop_build_info = %v, want 1", got)
	}
	labels := map[string]string{}
	for _, lp := range metric.GetLabel() {
		labels[lp.GetName()] = lp.GetValue()
	}
	want := map[string]string{"version": "v1.2.3", "goversion": runtime.Version()}
	if len(labels) != len(want) {
		t.Errorf("imagedrop_build_info labels = %v, want %v", labels, want)
	}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("imagedrop_build_info{%s} = %q, want %q", k, labels[k], v)
		}
	}
}

func TestLint(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	m := New(reg, "v1.2.3")
	// Observe something in every family so the linter sees real samples.
	m.FileProcessed(KindArchive, ResultSuccess, time.Second)
	m.ImagePulled(PullPulled, time.Second)
	// The server registers promhttp's handler metrics on the same registry.
	NewServer(ServerConfig{}, nil, reg, nopProbes{})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

type nopProbes struct{}

func (nopProbes) Healthy() error                        { return nil }
func (nopProbes) Ready(context.Context) (string, error) { return "", nil }
func (nopProbes) Status() any                           { return nil }

func TestNewRegistry(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	want := []string{"go_goroutines"}
	if runtime.GOOS == "linux" {
		want = append(want, "process_start_time_seconds")
	}
	n, err := testutil.GatherAndCount(reg, want...)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Errorf("NewRegistry exposes %d of %v, want all", n, want)
	}
}

// TestLabelValues checks that values outside the constant sets collapse to
// "unknown" instead of opening a series per value.
func TestLabelValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		drive  func(m *Metrics)
		family string
		want   string // exposition of family, without HELP and TYPE
	}{
		{
			name: "bad kind and result",
			drive: func(m *Metrics) {
				m.FileProcessed("/var/lib/imagedrop/a.tar", ResultSuccess, 0)
				m.FileProcessed("zip", ResultSuccess, 0)
				m.FileProcessed(KindArchive, "meh", 0)
			},
			family: "imagedrop_files_processed_total",
			want: `
imagedrop_files_processed_total{kind="archive",result="failure"} 0
imagedrop_files_processed_total{kind="archive",result="skipped"} 0
imagedrop_files_processed_total{kind="archive",result="success"} 0
imagedrop_files_processed_total{kind="archive",result="unknown"} 1
imagedrop_files_processed_total{kind="list",result="failure"} 0
imagedrop_files_processed_total{kind="list",result="skipped"} 0
imagedrop_files_processed_total{kind="list",result="success"} 0
imagedrop_files_processed_total{kind="unknown",result="success"} 2
`,
		},
		{
			name: "bad pull result",
			drive: func(m *Metrics) {
				m.ImagePulled("docker.io/library/nginx:1", 0)
				m.ImagePulled("oops", 0)
			},
			family: "imagedrop_image_pulls_total",
			want: `
imagedrop_image_pulls_total{result="failure"} 0
imagedrop_image_pulls_total{result="present"} 0
imagedrop_image_pulls_total{result="pulled"} 0
imagedrop_image_pulls_total{result="unknown"} 2
`,
		},
		{
			name:   "skipped is not a retag result",
			drive:  func(m *Metrics) { m.Retagged(ResultSkipped) },
			family: "imagedrop_retags_total",
			want: `
imagedrop_retags_total{result="failure"} 0
imagedrop_retags_total{result="success"} 0
imagedrop_retags_total{result="unknown"} 1
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg, m := newTestMetrics(t)
			tt.drive(m)
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var help string
			for _, mf := range mfs {
				if mf.GetName() == tt.family {
					help = mf.GetHelp()
				}
			}
			want := "# HELP " + tt.family + " " + help + "\n# TYPE " + tt.family + " counter" + tt.want
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), tt.family); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestNonPositiveCounts checks that counters ignore n <= 0 instead of
// panicking as prometheus.Counter.Add does on negative values.
func TestNonPositiveCounts(t *testing.T) {
	t.Parallel()
	_, m := newTestMetrics(t)
	m.BytesRead(-1)
	m.BytesRead(0)
	m.ImagesImported(-3)
	m.Unpinned(-2)
	for name, c := range map[string]prometheus.Collector{
		"archive_bytes_read_total": m.archiveBytes,
		"images_imported_total":    m.imagesImported,
		"unpins_total":             m.unpins,
	} {
		if got := testutil.ToFloat64(c); got != 0 {
			t.Errorf("%s = %v, want 0", name, got)
		}
	}
}
