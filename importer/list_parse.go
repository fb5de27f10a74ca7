package importer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/distribution/reference"
)

// MaxListLine is the longest line an image list may have, in bytes, line
// end excluded.
const MaxListLine = 4096

// excerptLength is how much of a bad line an error quotes, in bytes.
const excerptLength = 32

// notAListInvalid is how many invalid lines, when they are also most of the
// reference lines, make a file "not an image list" as a whole.
const notAListInvalid = 5

// Errors that make a whole image list unusable.
var (
	ErrLineTooLong = fmt.Errorf("line longer than %d bytes", MaxListLine)
	ErrNotText     = errors.New("not a text file")
	// ErrNotAList is a text file most of whose lines are not references.
	ErrNotAList = errors.New("does not look like an image list")
	// ErrTooManyReferences is a list over Config.MaxListReferences lines
	// that name references, valid or not.
	ErrTooManyReferences = errors.New("too many references")
	// ErrListTooLarge is a list file over Config.MaxListSize.
	ErrListTooLarge = errors.New("list too large")
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
	return fmt.Sprintf("line %d: invalid reference %s: %v", e.Line, excerpt(e.Text), e.Err)
}

// excerpt quotes the start of s for an error, escaped (strconv.Quote), at
// most excerptLength bytes of it, with "…" if it was cut.
func excerpt(s string) string {
	if len(s) <= excerptLength {
		return strconv.Quote(s)
	}
	return strconv.Quote(strings.ToValidUTF8(s[:excerptLength], "")) + "…"
}

func (e LineError) Unwrap() error { return e.Err }

// ParseList reads an image list: one reference per line; surrounding
// whitespace, CRLF line ends and a UTF-8 byte order mark are ignored;
// blank lines and lines starting with # are skipped; a reference may be
// followed by whitespace and a # comment. Invalid lines are collected in
// List.Invalid and do not stop the others. The error is for a list that
// cannot be read at all: a line longer than MaxListLine (ErrLineTooLong),
// a NUL byte or invalid UTF-8 (ErrNotText), at least 5 invalid lines that
// are most of the reference lines (ErrNotAList), or a read error. The
// errors quote nothing of the file.
func ParseList(r io.Reader) (List, error) { return parseList(r, 0) }

// parseList is ParseList that fails with ErrTooManyReferences once more
// than maxRefs lines (maxRefs > 0) name references, valid or not. Every
// error but a read error is permanent.
func parseList(r io.Reader, maxRefs int) (List, error) {
	p := listParser{seen: map[string]bool{}}
	sc := bufio.NewScanner(r)
	// Room for the longest line plus its CRLF, so that "too long" is
	// decided below on the line itself.
	sc.Buffer(make([]byte, 0, 512), MaxListLine+2)
	for sc.Scan() {
		if err := p.line(sc.Bytes()); err != nil {
			return List{}, invalid(err)
		}
		if maxRefs > 0 && p.refLines > maxRefs {
			return List{}, invalid(fmt.Errorf("line %d: %w: more than %d (--max-list-references)", p.n, ErrTooManyReferences, maxRefs))
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return List{}, invalid(fmt.Errorf("line %d: %w", p.n+1, ErrLineTooLong))
		}
		return List{}, fmt.Errorf("read list: %w", err)
	}
	if bad := len(p.list.Invalid); bad >= notAListInvalid && 2*bad > p.refLines {
		return List{}, invalid(fmt.Errorf("%w: %d of %d lines are not image references (the first is line %d)",
			ErrNotAList, bad, p.refLines, p.list.Invalid[0].Line))
	}
	return p.list, nil
}

// listParser is the state of parseList: the list so far, line by line.
type listParser struct {
	list     List
	seen     map[string]bool
	n        int // lines read
	refLines int // lines that name a reference, valid or not
}

// line parses the next line; its error makes the whole list unusable.
func (p *listParser) line(raw []byte) error {
	p.n++
	if p.n == 1 {
		raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
	}
	raw = bytes.TrimSuffix(raw, []byte("\r"))
	switch {
	case len(raw) > MaxListLine:
		return fmt.Errorf("line %d: %w", p.n, ErrLineTooLong)
	case bytes.IndexByte(raw, 0) >= 0:
		return fmt.Errorf("line %d: %w (NUL byte)", p.n, ErrNotText)
	case !utf8.Valid(raw):
		return fmt.Errorf("line %d: %w (invalid UTF-8)", p.n, ErrNotText)
	}
	text, ok, err := splitListLine(string(raw))
	if !ok {
		return nil
	}
	p.refLines++
	if err == nil {
		var e ListEntry
		if e, err = parseListReference(text); err == nil {
			if !p.seen[e.Image] {
				p.seen[e.Image] = true
				e.Line = p.n
				p.list.Entries = append(p.list.Entries, e)
			}
			return nil
		}
	}
	p.list.Invalid = append(p.list.Invalid, LineError{Line: p.n, Text: text, Err: err})
	return nil
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
		return text, true, errors.New("unexpected text after the reference (a comment starts with #)")
	}
	return text, true, nil
}

// parseListReference validates and normalises one reference.
func parseListReference(s string) (ListEntry, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return ListEntry{}, referenceReason(err)
	}
	named = reference.TagNameOnly(named)
	e := ListEntry{Reference: named.String(), Image: named.String()}
	if d, ok := named.(reference.Digested); ok {
		e.Image = named.Name() + "@" + d.Digest().String()
	}
	return e, nil
}

// referenceReason is the reason a reference does not parse, as one of
// distribution/reference's fixed errors: some of its errors quote the
// text, which the caller quotes shortened itself.
func referenceReason(err error) error {
	for _, known := range []error{
		reference.ErrNameContainsUppercase, reference.ErrNameEmpty, reference.ErrNameTooLong,
		reference.ErrTagInvalidFormat, reference.ErrDigestInvalidFormat, reference.ErrNameNotCanonical,
	} {
		if errors.Is(err, known) {
			return known
		}
	}
	if strings.Contains(err.Error(), "must be lowercase") {
		return reference.ErrNameContainsUppercase
	}
	if strings.Contains(err.Error(), "64-byte hexadecimal") {
		return errors.New("a 64-character hexadecimal string is an image ID, not a reference")
	}
	return reference.ErrReferenceInvalidFormat
}
