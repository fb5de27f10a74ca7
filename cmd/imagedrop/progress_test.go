package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func TestFormatBytes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {512, "512 B"}, {1023, "1023 B"}, {1024, "1.00 KiB"}, {1536, "1.50 KiB"},
		{12_900_000, "12.3 MiB"}, {845 << 20, "845 MiB"}, {1100 << 20, "1.07 GiB"}, {3 << 40, "3.00 TiB"},
	} {
		if got := formatBytes(tt.n); got != tt.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"}, {400 * time.Millisecond, "0s"}, {45 * time.Second, "45s"}, {125 * time.Second, "2m05s"},
		{time.Hour + 2*time.Minute + 30*time.Second, "1h02m"}, {50 * time.Hour, "50h00m"},
	} {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		f    fileProgress
		want string
	}{
		{"size known", fileProgress{name: "app.tar", read: 25 << 20, size: 100 << 20, took: 5 * time.Second},
			"app.tar  25.0 MiB / 100 MiB   25%  5.00 MiB/s  ETA 15s"},
		{"all read: no ETA", fileProgress{name: "app.tar", read: 100 << 20, size: 100 << 20, took: 10 * time.Second},
			"app.tar  100 MiB / 100 MiB  100%  10.0 MiB/s"},
		{"size unknown", fileProgress{name: "-", read: 3 << 20, took: 2 * time.Second},
			"-  3.00 MiB  1.50 MiB/s"},
		{"nothing read yet (a list)", fileProgress{name: "apps.txt", took: 75 * time.Second},
			"apps.txt  running 1m15s"},
		{"long name keeps its tail", fileProgress{name: "/var/lib/imagedrop/images/some/deep/dir/app.tar.zst", read: 1 << 20, size: 2 << 20, took: time.Second},
			"…mages/some/deep/dir/app.tar.zst  1.00 MiB / 2.00 MiB   50%  1.00 MiB/s  ETA 1s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := progressLine(tt.f, 80); got != tt.want {
				t.Errorf("progressLine = %q\nwant           %q", got, tt.want)
			}
		})
	}
}

// TestProgressLineWidth: whatever the terminal's width and the file's name,
// a line never reaches the last column (which would wrap it and break the
// redraw in place).
func TestProgressLineWidth(t *testing.T) {
	t.Parallel()
	names := []string{"a", "app.tar", strings.Repeat("long-directory/", 20) + "app.tar.zst", "ünïcødé/ファイル.tar"}
	for width := 0; width <= 200; width++ {
		for _, name := range names {
			f := fileProgress{name: name, read: 7 << 30, size: 9 << 30, took: 3 * time.Minute}
			line := progressLine(f, width)
			if n := utf8.RuneCountInString(line); n >= max(width, 1) && n > 0 {
				t.Fatalf("width %d, name %q: line %q has %d runes", width, name, line, n)
			}
			if tail := filepath.Base(name); width >= 100 && !strings.Contains(line, tail) {
				t.Errorf("width %d: line %q lost the end of the name %q", width, line, tail)
			}
		}
	}
}

func TestProgressLinesManyFiles(t *testing.T) {
	t.Parallel()
	var files []fileProgress
	for i := range 30 {
		files = append(files, fileProgress{name: fmt.Sprintf("f%02d.tar", i), read: 1, size: 2, took: time.Second})
	}
	lines := progressLines(files, 60, 10)
	if len(lines) != 10 {
		t.Fatalf("got %d lines, want 10 (the height): %q", len(lines), lines)
	}
	if !strings.HasPrefix(lines[0], "f00.tar") || !strings.HasPrefix(lines[8], "f08.tar") {
		t.Errorf("lines do not show the first files in order: %q", lines)
	}
	if lines[9] != "… and 21 more running" {
		t.Errorf("last line = %q, want the count of the files not shown", lines[9])
	}
	if got := progressLines(files[:3], 60, 10); len(got) != 3 {
		t.Errorf("3 files gave %d lines", len(got))
	}
	if got := progressLines(files, 60, 0); len(got) != 1 || got[0] != "… and 30 more running" {
		t.Errorf("height 0 gave %q", got)
	}
}

func TestSummaryLine(t *testing.T) {
	t.Parallel()
	if got, want := summaryLine(3, 1, 5<<20, 1500*time.Millisecond), "done: 3 files, 1 failed, 5.00 MiB read in 1.5s"; got != want {
		t.Errorf("summaryLine = %q, want %q", got, want)
	}
	if got, want := summaryLine(1, 0, 10, time.Second), "done: 1 file, 10 B read in 1s"; got != want {
		t.Errorf("summaryLine = %q, want %q", got, want)
	}
}

// syncBuffer is a bytes.Buffer safe for the display's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTerminalProgress drives the tty display: a line written while a file
// runs erases the progress line, is written, and the progress line comes
// back below it; after stop nothing more is drawn.
func TestTerminalProgress(t *testing.T) {
	t.Parallel()
	var tty syncBuffer
	p := newImportProgress(progressTTY, &tty, 2)
	p.started(0, "/no/such/a.tar")
	p.read(0, 2048)
	p.println(&tty, "OK   b.tar")
	p.finished(0)
	p.println(&tty, "OK   a.tar")
	p.stop()
	p.stop()
	p.println(&tty, "done")
	want := "\r\x1b[J" + "OK   b.tar\n" + "\x1b[2K/no/such/a.tar  2.00 KiB  " // the redraw: rate follows
	if got := tty.String(); !strings.HasPrefix(got, want) {
		t.Fatalf("output starts %q, want %q", got, want)
	}
	if got := tty.String(); !strings.Contains(got, "\x1b[1A\r\x1b[JOK   a.tar\n") || !strings.HasSuffix(got, "done\n") {
		t.Errorf("output %q: want a.tar's line over its erased progress line, then done", got)
	}
}

func TestPlainProgress(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	p := newImportProgress(progressAuto, &out, 1) // not a terminal
	p.started(0, "a.tar")
	p.read(0, 10)
	p.println(&out, "OK   a.tar")
	_, _ = p.Write([]byte("level=INFO msg=x\n"))
	p.finished(0)
	p.stop()
	if got, want := out.String(), "OK   a.tar\nlevel=INFO msg=x\n"; got != want {
		t.Errorf("plain output = %q, want %q", got, want)
	}
}

// TestPrintable checks that what a terminal would act on in a file name or
// an error is escaped, and everything else is left as it is.
func TestPrintable(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"images/app v1.tar.gz", "images/app v1.tar.gz"},
		{"образ-ü.tar", "образ-ü.tar"},
		{"a\x1b[2Jb.tar", `a\x1b[2Jb.tar`},
		{"two\nlines\r.tar", `two\x0alines\x0d.tar`},
		{"c1\u009b.tar", `c1\x9b.tar`},
		{"bidi\u202e.tar", `bidi\u202e.tar`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"tab\there", `tab\x09here`},
	} {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
