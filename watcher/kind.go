package watcher

// Matcher tells what kind of file path is from its name, for Status, the
// Observer and the Processor's sake, or false for a file the watcher ignores.
// The watcher knows no file kinds of its own: cmd/imagedrop hands it the
// importer's table.
type Matcher func(path string) (kind string, ok bool)

// match returns the kind of the file at path, or "" for a file to ignore.
func (w *Watcher) match(path string) string {
	kind, ok := w.cfg.Match(path)
	if !ok {
		return ""
	}
	return kind
}
