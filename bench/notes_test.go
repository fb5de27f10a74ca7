package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseNotes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, report, want, wantErr string
	}{
		{name: "no markers", report: "# imagedrop benchmarks\n\n## Machine\n"},
		{name: "empty", report: "intro\n" + notesBegin + "\n" + notesEnd + "\n\n## Machine\n"},
		{name: "notes", report: "intro\n" + notesBegin + "\n## Notes\n\nThe list case is bound by the disk.\n" + notesEnd + "\n## Machine\n",
			want: "## Notes\n\nThe list case is bound by the disk."},
		{name: "begin only", report: notesBegin + "\nlost?\n", wantErr: "found them 1 and 0 times"},
		{name: "end only", report: "lost?\n" + notesEnd + "\n", wantErr: "found them 0 and 1 times"},
		{name: "twice", report: notesSection("a") + notesSection("b"), wantErr: "found them 2 and 2 times"},
		{name: "end before begin", report: notesEnd + "\nlost?\n" + notesBegin + "\n", wantErr: "comes before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseNotes(tc.report)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseNotes error = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseNotes: %v", err)
			}
			if got != tc.want {
				t.Errorf("parseNotes = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestWriteReportKeepsNotes checks that the notes of the report replaced
// survive one run after another, including notes edited during a run, and
// that nothing else of the old report does.
func TestWriteReportKeepsNotes(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	b := &bench{cfg: config{out: out}, log: io.Discard}
	read := func() string {
		t.Helper()
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return string(got)
	}

	// The first run finds no file: the markers mark where notes go.
	if err := b.writeReport(&report{}, ""); err != nil {
		t.Fatal(err)
	}
	if got := read(); !strings.Contains(got, notesBegin+"\n"+notesEnd+"\n") {
		t.Fatalf("first report has no empty notes section:\n%s", got)
	}

	// Someone writes notes into it, and a stale line outside them.
	notes := "## Notes\n\nWritten by hand: 0.51× on disk, 0.39× in memory.\n\n- a list item"
	first := read()
	edited := strings.Replace(first, notesBegin+"\n", notesBegin+"\n"+notes+"\n", 1) + "stale generated line\n"
	if err := os.WriteFile(out, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	for run := range 2 {
		atStart, err := readNotes(out)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.writeReport(&report{}, atStart); err != nil {
			t.Fatal(err)
		}
		got := read()
		if n, _ := parseNotes(got); n != notes {
			t.Errorf("run %d: notes = %q, want %q", run+1, n, notes)
		}
		if strings.Count(got, notes) != 1 || strings.Contains(got, "stale generated line") {
			t.Errorf("run %d: want the notes once and nothing else of the old report, got:\n%s", run+1, got)
		}
		if !strings.HasPrefix(got, "# imagedrop benchmarks\n") || !strings.Contains(got, "\n## Machine\n") {
			t.Errorf("run %d: generated part missing:\n%s", run+1, got)
		}
	}

	// Notes edited during a run are the ones kept.
	atStart, err := readNotes(out)
	if err != nil {
		t.Fatal(err)
	}
	later := notes + "\n\nAdded while the bench ran."
	if err := os.WriteFile(out, []byte(notesSection(later)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.writeReport(&report{}, atStart); err != nil {
		t.Fatal(err)
	}
	if n, _ := parseNotes(read()); n != later {
		t.Errorf("notes edited during the run = %q, want %q", n, later)
	}

	// Markers broken during a run: the notes of the start are kept.
	if err := os.WriteFile(out, []byte(notesBegin+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.writeReport(&report{}, later); err != nil {
		t.Fatal(err)
	}
	if n, _ := parseNotes(read()); n != later {
		t.Errorf("notes after the markers broke = %q, want those of the start, %q", n, later)
	}
}

func TestReadNotesOfNoFile(t *testing.T) {
	t.Parallel()
	got, err := readNotes(filepath.Join(t.TempDir(), "absent.md"))
	if got != "" || err != nil {
		t.Errorf("readNotes of no file = %q, %v; want nothing and no error", got, err)
	}
}
