package importer

import (
	"errors"
	"fmt"
)

// Bounds on what one archive may make the importer hold in memory. Each is
// a field of Config, set by a flag of cmd/imagedrop.
const (
	// defaultMaxJSONSize bounds each JSON document read into memory:
	// manifest.json, index.json, manifests, indexes and configs. Real
	// configs are a few KiB to a few MiB (long histories, many labels).
	defaultMaxJSONSize = 16 << 20
	// defaultMaxArchiveEntries bounds the entries of one tar: a bundle of
	// 300 images of 30 layers in the classic docker save format has about
	// 36,000.
	defaultMaxArchiveEntries = 100_000
	// minMaxJSONSize is the smallest MaxJSONSize Validate accepts.
	minMaxJSONSize = 4 << 10
)

// The errors of the bounds, for errors.Is.
var (
	ErrJSONTooLarge   = errors.New("JSON document too large")
	ErrTooManyEntries = errors.New("too many archive entries")
)

// tooLarge is the error of a JSON document, what, larger than limit.
func tooLarge(what string, limit int64) error {
	return invalid(fmt.Errorf("%s is larger than the %s allowed (--max-json-size): %w", what, sizeString(limit), ErrJSONTooLarge))
}

// tooManyEntries is the error of an archive of more than limit entries.
func tooManyEntries(limit int) error {
	return invalid(fmt.Errorf("archive has more than %d entries (--max-archive-entries): %w", limit, ErrTooManyEntries))
}

// sizeString spells a size in the largest binary unit that divides it.
func sizeString(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%dB", n)
}
