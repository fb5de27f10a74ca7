package watcher

import (
	"path/filepath"
	"strings"
)

// Kinds of file the watcher hands to the Processor.
const (
	KindArchive = "archive" // an image archive, possibly compressed
	KindList    = "list"    // a text file of image references
)

var archiveSuffixes = []string{
	".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar.lz4", ".tar.bz2", ".tbz",
}

// Kind tells what path holds by its suffix, case-insensitively: KindArchive,
// KindList, or "" for a file the watcher ignores.
func Kind(path string) string {
	name := strings.ToLower(filepath.Base(path))
	if strings.HasSuffix(name, ".txt") {
		return KindList
	}
	for _, s := range archiveSuffixes {
		if strings.HasSuffix(name, s) {
			return KindArchive
		}
	}
	return ""
}

// match returns the kind of the file at path, or "" for a file to ignore.
func (w *Watcher) match(path string) string { return Kind(path) }
