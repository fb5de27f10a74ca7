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

// kinds is the one table of the file names imagedrop picks up, by suffix,
// matched case-insensitively. The suffix only selects the file; an archive's
// compression is always sniffed from its content. The watcher is handed
// KindOf by cmd/imagedrop, and error texts are built from this table.
var kinds = []struct {
	kind     Kind
	suffixes []string
}{
	{KindArchive, []string{".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar.lz4", ".tar.bz2", ".tbz"}},
	{KindList, []string{".txt"}},
}

// Kinds returns every kind, in table order.
func Kinds() []Kind {
	out := make([]Kind, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, k.kind)
	}
	return out
}

// KindOf tells what a file holds from its name. It returns false for names
// imagedrop does not handle.
func KindOf(path string) (Kind, bool) {
	name := strings.ToLower(filepath.Base(path))
	for _, k := range kinds {
		for _, s := range k.suffixes {
			if strings.HasSuffix(name, s) {
				return k.kind, true
			}
		}
	}
	return "", false
}

// suffixList is the handled suffixes as a sentence: ".tar, .tgz or .txt".
func suffixList() string {
	var all []string
	for _, k := range kinds {
		all = append(all, k.suffixes...)
	}
	return strings.Join(all[:len(all)-1], ", ") + " or " + all[len(all)-1]
}
