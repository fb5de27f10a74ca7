package main

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// fileProgress is how far the import of one running file has got.
type fileProgress struct {
	name string        // the file, as given
	read int64         // bytes of it read so far
	size int64         // its size; 0 when unknown (a list, stdin)
	took time.Duration // since it started
}

// progressLines renders the running files as at most height lines, each
// narrower than width (a terminal wraps a line that fills its last column).
// Files that do not fit are counted on the last line.
func progressLines(files []fileProgress, width, height int) []string {
	height = max(height, 1)
	shown := files
	if len(files) > height {
		shown = files[:height-1]
	}
	lines := make([]string, 0, len(shown)+1)
	for _, f := range shown {
		lines = append(lines, progressLine(f, width))
	}
	if more := len(files) - len(shown); more > 0 {
		lines = append(lines, fit(fmt.Sprintf("… and %d more running", more), width))
	}
	return lines
}

// progressLine renders one running file: its name (shortened from the left
// to fit), bytes read of its size, percent, rate and ETA when the size is
// known, and always narrower than width.
func progressLine(f fileProgress, width int) string {
	status := progressStatus(f)
	room := width - 1 - utf8.RuneCountInString(status) - 2
	return fit(shortName(f.name, room)+"  "+status, width)
}

// progressStatus is the part of a progress line after the file name.
func progressStatus(f fileProgress) string {
	secs := f.took.Seconds()
	if f.read == 0 {
		return "running " + formatDuration(f.took)
	}
	var rate float64
	if secs > 0 {
		rate = float64(f.read) / secs
	}
	if f.size <= 0 {
		return fmt.Sprintf("%s  %s/s", formatBytes(f.read), formatBytes(int64(rate)))
	}
	s := fmt.Sprintf("%s / %s  %3d%%  %s/s", formatBytes(f.read), formatBytes(f.size),
		min(100, 100*f.read/f.size), formatBytes(int64(rate)))
	if rate > 0 && f.read < f.size {
		s += "  ETA " + formatDuration(time.Duration(float64(f.size-f.read)/rate*float64(time.Second)))
	}
	return s
}

// shortName is name within room runes: its tail after an ellipsis when too
// long, as the end of a path tells files apart.
func shortName(name string, room int) string {
	r := []rune(name)
	switch {
	case len(r) <= room:
		return name
	case room < 2:
		return ""
	}
	return "…" + string(r[len(r)-room+1:])
}

// printable is s with what a terminal would act on escaped: control
// characters (escape sequences, newlines, carriage returns) and bytes that
// are not UTF-8 become \xNN or \uNNNN. A file name is anyone's choice, and
// imagedrop's output is one line per file that must not move the cursor.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !(unicode.IsGraphic(r) || r == ' ') {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsGraphic(r) || r == ' ':
			b.WriteString(s[i : i+n])
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += n
	}
	return b.String()
}

// fit cuts s to fewer than width runes, ending it with an ellipsis if cut.
func fit(s string, width int) string {
	if width <= 1 {
		return ""
	}
	r := []rune(s)
	if len(r) < width {
		return s
	}
	return string(r[:width-2]) + "…"
}

// formatBytes spells n bytes in IEC units with three significant digits:
// 512 B, 1.50 KiB, 12.3 MiB, 845 MiB, 1.02 GiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, prefix := float64(n), ""
	for _, p := range []string{"Ki", "Mi", "Gi", "Ti", "Pi"} {
		if v < unit {
			break
		}
		v, prefix = v/unit, p
	}
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f %sB", v, prefix)
	case v < 100:
		return fmt.Sprintf("%.1f %sB", v, prefix)
	}
	return fmt.Sprintf("%.0f %sB", v, prefix)
}

// formatDuration spells d to the second: 45s, 2m05s, 1h02m.
func formatDuration(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
}

// summaryLine is the last line of an import: files, failures, bytes, time.
func summaryLine(files, failed int, read int64, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "done: %d file", files)
	if files != 1 {
		b.WriteString("s")
	}
	if failed > 0 {
		fmt.Fprintf(&b, ", %d failed", failed)
	}
	fmt.Fprintf(&b, ", %s read in %s", formatBytes(read), took.Round(time.Millisecond))
	return b.String()
}
