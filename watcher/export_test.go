package watcher

import (
	"path/filepath"
	"strings"
)

// MatchForTest is the Matcher of the watcher's tests: .txt files are lists,
// and .tar and .tgz files, compressed or not, archives, in any case. The real
// table is the importer's.
func MatchForTest(path string) (string, bool) {
	name := strings.ToLower(filepath.Base(path))
	switch {
	case strings.HasSuffix(name, ".txt"):
		return "list", true
	case strings.HasSuffix(name, ".tar"), strings.HasSuffix(name, ".tgz"), strings.Contains(name, ".tar."):
		return "archive", true
	}
	return "", false
}
