package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// A report keeps, between these markers, notes written by hand about the
// results (what bounds a case, what was tried): the bench writes everything
// else anew and carries over the notes of the file it replaces, so that
// `make bench -out BENCHMARKS.md` does not lose them.
const (
	notesBegin = "<!-- notes: written by hand; make bench keeps what is between these markers -->"
	notesEnd   = "<!-- end of notes -->"
)

// readNotes returns the notes of the report at path: what is between its
// markers, without the newlines around it; "" if the file has no markers
// or does not exist.
func readNotes(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the notes of %s: %w", path, err)
	}
	notes, err := parseNotes(string(b))
	if err != nil {
		return "", fmt.Errorf("notes of %s: %w", path, err)
	}
	return notes, nil
}

// parseNotes returns what is between the notes markers of report, "" if it
// has neither; a report with one marker but not the other, or either twice,
// is an error rather than notes silently lost.
func parseNotes(report string) (string, error) {
	begins, ends := strings.Count(report, notesBegin), strings.Count(report, notesEnd)
	if begins == 0 && ends == 0 {
		return "", nil
	}
	if begins != 1 || ends != 1 {
		return "", fmt.Errorf("want the markers %q and %q once each, found them %d and %d times", notesBegin, notesEnd, begins, ends)
	}
	_, rest, _ := strings.Cut(report, notesBegin)
	notes, _, ok := strings.Cut(rest, notesEnd)
	if !ok {
		return "", fmt.Errorf("marker %q comes before %q", notesEnd, notesBegin)
	}
	return strings.Trim(notes, "\n"), nil
}

// notesSection is notes between their markers, as a report holds them, and
// a blank line; the markers stay when there are no notes, to show where
// they go.
func notesSection(notes string) string {
	if notes == "" {
		return notesBegin + "\n" + notesEnd + "\n\n"
	}
	return notesBegin + "\n" + notes + "\n" + notesEnd + "\n\n"
}

// writeReport writes rep to the -out file with the notes that file holds
// now (edited while the bench ran, perhaps), or, should they have become
// unreadable since the start, with notes, those it held then.
func (b *bench) writeReport(rep *report, notes string) error {
	if now, err := readNotes(b.cfg.out); err != nil {
		b.logf("keeping the notes as they were at the start: %v", err)
	} else {
		notes = now
	}
	rep.notes = notes
	return os.WriteFile(b.cfg.out, []byte(rep.markdown()), 0o644)
}
