package main

import (
	"slices"
	"testing"

	"github.com/imagedrop/imagedrop/importer"
	"github.com/imagedrop/imagedrop/metrics"
	"github.com/imagedrop/imagedrop/watcher"
)

// TestLabelValues checks that the kinds and results the watcher and the
// importer report are exactly the label values metrics accepts, so that no
// series is ever counted as "unknown" and none stays at zero for ever.
func TestLabelValues(t *testing.T) {
	t.Parallel()
	var kinds []string
	for _, k := range importer.Kinds() {
		kinds = append(kinds, string(k))
	}
	for _, tt := range []struct {
		what           string
		reported, want []string
	}{
		{"file kinds (importer's table, the watcher's matcher)", kinds, metrics.Kinds()},
		{"file results (watcher)", watcher.Results(), metrics.FileResults()},
		{"pull outcomes (importer)", importer.PullOutcomes(), metrics.PullResults()},
		{"retag results (importer)", importer.RetagResults(), metrics.RetagResults()},
		{"refusal reasons (importer)", importer.RefusalReasons(), metrics.RefusalReasons()},
		{"verification policies (importer)", importer.VerifyPolicies(), metrics.VerifyPolicies()},
		{"verification results (importer)", importer.VerifyResults(), metrics.VerifyResults()},
	} {
		got, want := slices.Sorted(slices.Values(tt.reported)), slices.Sorted(slices.Values(tt.want))
		if !slices.Equal(got, want) {
			t.Errorf("%s: reported %q, metrics accepts %q", tt.what, got, want)
		}
	}
	for _, name := range []string{"a.tar", "b.tar.zst", "c.txt"} {
		kind, ok := matchFile(name)
		if !ok || !slices.Contains(metrics.Kinds(), kind) {
			t.Errorf("matchFile(%q) = %q, %v; want a kind metrics accepts", name, kind, ok)
		}
	}
}
