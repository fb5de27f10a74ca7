package importer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/distribution/reference"
)

// MaxListLine is the longest line an image list may have, in bytes, line
// end excluded.
const MaxListLine = 4096

// Errors that make a whole image list unusable.
var (
	ErrLineTooLong = fmt.Errorf("line longer than %d bytes", MaxListLine)
	ErrNotText     = errors.New("not a text file")
)

// List is a parsed image list.
type List struct {
	// Entries are the valid references, each image once, in the order of
	// their first line.
	Entries []ListEntry
	// Invalid are the lines that name no valid reference, in order.
	Invalid []LineError
}

// ListEntry is one reference of an image list.
type ListEntry struct {
	// Line is the 1-based line the reference is on (its first, if repeated).
	Line int
	// Reference is the normalised reference that is pulled:
	// "busybox" becomes "docker.io/library/busybox:latest".
	Reference string
	// Image is the name the CRI stores the image under: Reference, or
	// name@digest when the reference has a digest (a tag next to a digest
	// is dropped, as the CRI does).
	Image string
}

// LineError is a line of an image list that names no valid reference.
type LineError struct {
	Line int
	// Text is the reference as written.
	Text string
	Err  error
}

func (e LineError) Error() string {
	return fmt.Sprintf("line %d: invalid reference %q: %v", e.Line, e.Text, e.Err)
}

func (e LineError) Unwrap() error { return e.Err }

// ParseList reads an image list: one reference per line; surrounding
// whitespace, CRLF line ends and a UTF-8 byte order mark are ignored;
// blank lines and lines starting with # are skipped; a reference may be
// followed by whitespace and a # comment. Invalid lines are collected in
// List.Invalid and do not stop the others. The error is for a list that
// cannot be read at all: a line longer than MaxListLine (ErrLineTooLong),
// a NUL byte or invalid UTF-8 (ErrNotText), or a read error.
func ParseList(r io.Reader) (List, error) {
	var list List
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	// Room for the longest line plus its CRLF, so that "too long" is
	// decided below on the line itself.
	sc.Buffer(make([]byte, 0, 512), MaxListLine+2)
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Bytes()
		if n == 1 {
			raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
		}
		raw = bytes.TrimSuffix(raw, []byte("\r"))
		if len(raw) > MaxListLine {
			return List{}, fmt.Errorf("line %d: %w", n, ErrLineTooLong)
		}
		if bytes.IndexByte(raw, 0) >= 0 {
			return List{}, fmt.Errorf("line %d: %w (NUL byte)", n, ErrNotText)
		}
		if !utf8.Valid(raw) {
			return List{}, fmt.Errorf("line %d: %w (invalid UTF-8)", n, ErrNotText)
		}
		text, ok, err := splitListLine(string(raw))
		if !ok {
			continue
		}
		if err == nil {
			var e ListEntry
			if e, err = parseListReference(text); err == nil {
				if !seen[e.Image] {
					seen[e.Image] = true
					e.Line = n
					list.Entries = append(list.Entries, e)
				}
				continue
			}
		}
		list.Invalid = append(list.Invalid, LineError{Line: n, Text: text, Err: err})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return List{}, fmt.Errorf("line %d: %w", n+1, ErrLineTooLong)
		}
		return List{}, fmt.Errorf("read list: %w", err)
	}
	return list, nil
}

// splitListLine returns the reference on a line; ok is false for a blank
// or comment line. Anything after the reference but a # comment is an error.
func splitListLine(line string) (text string, ok bool, err error) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", false, nil
	}
	i := strings.IndexFunc(line, unicode.IsSpace)
	if i < 0 {
		return line, true, nil
	}
	text, rest := line[:i], strings.TrimSpace(line[i:])
	if rest[0] != '#' {
		return text, true, fmt.Errorf("unexpected text %q after the reference (a comment starts with #)", rest)
	}
	return text, true, nil
}

// parseListReference validates and normalises one reference.
func parseListReference(s string) (ListEntry, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return ListEntry{}, err
	}
	named = reference.TagNameOnly(named)
	e := ListEntry{Reference: named.String(), Image: named.String()}
	if d, ok := named.(reference.Digested); ok {
		e.Image = named.Name() + "@" + d.Digest().String()
	}
	return e, nil
}
