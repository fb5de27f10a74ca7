package importer

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenFallback: without openat2 (ENOSYS) a path is checked after
// resolving its symlinks, and the opened descriptor against what the check
// resolved. A link inside root opens; one out of it does not.
func TestOpenFallback(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	root, outside := filepath.Join(base, "images"), filepath.Join(base, "host")
	for _, d := range []string{root, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string) {
		if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "real.tar"))
	write(filepath.Join(outside, "secret"))
	links := map[string]string{"in.tar": "real.tar", "abs.tar": filepath.Join(root, "real.tar"),
		"out.tar": "../host/secret", "abs-out.tar": filepath.Join(outside, "secret")}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	for name, wantErr := range map[string]error{"real.tar": nil, "in.tar": nil, "abs.tar": nil,
		"out.tar": ErrOutsideRoot, "abs-out.tar": ErrOutsideRoot} {
		fd, err := openFallback(root, filepath.Join(root, name))
		if !errors.Is(err, wantErr) {
			t.Errorf("openFallback(%s) error = %v, want %v", name, err, wantErr)
		}
		if err == nil {
			_ = unix.Close(fd)
		}
	}
}
