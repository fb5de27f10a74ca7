package importer

import (
	"path/filepath"
	"strings"
)

// Kind is what a file in the images directory holds.
type Kind string

// The kinds of file imagedrop handles.
const (
	KindArchive Kind = "archive"
	KindList    Kind = "list"
)

// archiveSuffixes are the archive names imagedrop picks up. The suffix only
// selects the file; the compression is always sniffed from its content.
var archiveSuffixes = []string{".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar.lz4", ".tar.bz2", ".tbz"}

// KindOf tells what a file holds from its name, matched case-insensitively.
// It returns false for names imagedrop does not handle.
func KindOf(path string) (Kind, bool) {
	name := strings.ToLower(filepath.Base(path))
	if strings.HasSuffix(name, ".txt") {
		return KindList, true
	}
	for _, s := range archiveSuffixes {
		if strings.HasSuffix(name, s) {
			return KindArchive, true
		}
	}
	return "", false
}
