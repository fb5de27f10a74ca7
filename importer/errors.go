package importer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"syscall"
)

// Errors come in two sorts, and callers treat them differently:
//
//   - Permanent: the file itself is bad (it does not parse, a digest does not
//     match, a blob is missing, a size limit is hit). Trying again cannot
//     help until the file changes. Such errors are wrapped by invalid and
//     report Permanent() true; IsPermanent tells them.
//   - Transient: the node is not ready (containerd unreachable, the disk
//     full, a registry down). Everything else; it may succeed later.

// invalidError marks err as the fault of the file, not of the node.
type invalidError struct{ err error }

func (e invalidError) Error() string { return e.err.Error() }
func (e invalidError) Unwrap() error { return e.err }

// Permanent reports that trying again cannot help until the file changes.
// The watcher looks for this method (errors.As) without importing this
// package.
func (e invalidError) Permanent() bool { return true }

// invalid marks err as permanent: the file is bad. It returns nil for nil.
func invalid(err error) error {
	if err == nil {
		return nil
	}
	return invalidError{err}
}

// IsPermanent reports whether err, or an error it wraps, says the file is
// bad, so that trying again cannot help until the file changes.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// Reasons a file is refused by a bound of the node's resources, as passed to
// Observer.Refused.
const (
	RefusedFreeSpace        = "free_space"        // it would take free space below --min-free-space
	RefusedDecompressedSize = "decompressed_size" // it decompresses to more than --max-expansion allows
	RefusedListSize         = "list_size"         // a list over --max-list-size
	RefusedListReferences   = "list_references"   // a list over --max-list-references
	RefusedJSONSize         = "json_size"         // a JSON document over --max-json-size
	RefusedArchiveEntries   = "archive_entries"   // an archive over --max-archive-entries
)

// RefusalReasons returns every reason Observer.Refused is told.
func RefusalReasons() []string {
	return []string{RefusedFreeSpace, RefusedDecompressedSize, RefusedListSize, RefusedListReferences,
		RefusedJSONSize, RefusedArchiveEntries}
}

// refusal returns why err refused a file by a bound, or "".
func refusal(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrLowSpace):
		return RefusedFreeSpace
	case errors.Is(err, ErrExpansion):
		return RefusedDecompressedSize
	case errors.Is(err, ErrListTooLarge):
		return RefusedListSize
	case errors.Is(err, ErrTooManyReferences):
		return RefusedListReferences
	case errors.Is(err, ErrJSONTooLarge):
		return RefusedJSONSize
	case errors.Is(err, ErrTooManyEntries):
		return RefusedArchiveEntries
	}
	return ""
}

// shortQuote quotes at most the first 64 bytes of s, escaped, for an error
// that names bad content without repeating it at length.
func shortQuote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}

// readFailure is an error reading an archive's data: the file is bad
// (truncated, corrupt, not what it says) unless reading the file itself
// failed, which is the node's fault (an I/O error of its disk).
func readFailure(err error) error {
	var (
		pe    *fs.PathError
		errno syscall.Errno
	)
	if err == nil || errors.Is(err, io.EOF) || errors.As(err, &pe) || errors.As(err, &errno) || IsPermanent(err) {
		return err
	}
	return invalid(err)
}

// withoutPath drops the path from an error of reading the archive file,
// which the error of its import names already; the system's error (an
// errno, which readFailure tells from a bad file) is kept.
func withoutPath(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// minErrorLength is the shortest Config.MaxErrorLength: room for a path
// and a reason.
const minErrorLength = 64

// shortError is an error whose text was cut; it still wraps the error.
type shortError struct {
	err error
	msg string
}

func (e shortError) Error() string { return e.msg }
func (e shortError) Unwrap() error { return e.err }

// shorten returns err with its text cut to max bytes (ending in "…"), or
// err itself if it is short enough.
func shorten(err error, max int) error {
	if err == nil || len(err.Error()) <= max {
		return err
	}
	return shortError{err: err, msg: cut(err.Error(), max)}
}

// cut returns s cut to at most max bytes, ending in "…" if it was cut,
// never in the middle of a UTF-8 sequence.
func cut(s string, max int) string {
	const ellipsis = "…"
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max-len(ellipsis)], "") + ellipsis
}
