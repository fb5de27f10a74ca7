package importer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// What a file in an images directory may be. The directory is a trust
// boundary: whoever can write it can make imagedrop read what it points at,
// so openInput reads only regular files, follows a symlink only if it
// resolves inside the directory, and refuses hard links there (a writer of
// the directory could hard-link a file it may not read, such as a host
// secret on the same filesystem). Every refusal is permanent and names the
// file, never what it points at; the target is not read.
var (
	// ErrNotRegular is a file that is a named pipe, device, socket or
	// directory: opening and reading such a file could block or read
	// something that is no archive or list.
	ErrNotRegular = errors.New("not a regular file (not read)")
	// ErrOutsideRoot is a symlink, or a path, that resolves outside the
	// images directory it was found in.
	ErrOutsideRoot = errors.New("resolves outside the images directory (not read)")
	// ErrHardLinked is a regular file in an images directory that has more
	// than one name (st_nlink > 1).
	ErrHardLinked = errors.New("has other hard links (not read: a hard link can name a file outside the images directory; copy the file instead of cp -l, ln or rsync --link-dest)")
)

// openFlags never block: a FIFO opened O_NONBLOCK for reading opens at
// once, and the descriptor is checked before anything is read.
const openFlags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY

// openInput opens the file at path for reading, without blocking, and
// returns it with its fstat only if it is a regular file. With root empty
// (imagedrop import) path is opened as given, symlinks followed. Otherwise
// path must lie in root, the watched directory it was found in: a symlink
// is followed only if it resolves inside root, and a hard-linked file is
// refused. The checks are made on the opened descriptor, so a file swapped
// between a check and the open cannot win.
func openInput(root, path string) (*os.File, fs.FileInfo, error) {
	var fd int
	var err error
	if root == "" {
		fd, err = openRetry(func() (int, error) { return unix.Open(path, openFlags, 0) })
	} else {
		fd, err = openBeneath(root, path)
	}
	if err != nil {
		return nil, nil, openError(err)
	}
	f := os.NewFile(uintptr(fd), path)
	st, err := checkOpened(f, root != "")
	if err != nil {
		_ = f.Close()
		return nil, nil, invalid(err) // the caller's error names path
	}
	return f, st, nil
}

// checkOpened checks what the descriptor of f is, and makes its reads
// blocking again (they are on a regular file).
func checkOpened(f *os.File, inRoot bool) (fs.FileInfo, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("is %s: %w", describeMode(st.Mode()), ErrNotRegular)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && inRoot && sys.Nlink > 1 {
		return nil, fmt.Errorf("%d names: %w", sys.Nlink, ErrHardLinked)
	}
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		return nil, fmt.Errorf("clear O_NONBLOCK: %w", err)
	}
	return st, nil
}

// openError is the error of an open that failed: a refusal of the policy
// is permanent, anything else (the file went away, EACCES) is not. It does
// not name path, which the caller's error does.
func openError(err error) error {
	switch {
	case errors.Is(err, ErrOutsideRoot), errors.Is(err, unix.EXDEV):
		return invalid(ErrOutsideRoot)
	case errors.Is(err, unix.ELOOP):
		return invalid(errors.New("too many symlinks, or a /proc magic link (not read)"))
	}
	return fmt.Errorf("open: %w", err)
}

// openBeneath opens path, which must lie in root, with openat2(2) resolving
// beneath root: no "..", absolute symlink or magic link may leave it. An
// absolute symlink that points into root is resolved once and opened again
// beneath root. Without openat2 (ENOSYS, Linux < 5.6, or a seccomp profile
// that denies it) openFallback checks the resolved path instead.
func openBeneath(root, path string) (int, error) {
	rel, err := relInRoot(root, path)
	if err != nil {
		return -1, err
	}
	dir, err := openRetry(func() (int, error) {
		return unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return -1, err
	}
	defer unix.Close(dir)
	fd, err := openat2(dir, rel)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		return openFallback(root, path)
	}
	if !errors.Is(err, unix.EXDEV) {
		return fd, err
	}
	// An absolute symlink, or one through "..", may still end in root.
	resolved, rerr := resolveInRoot(root, path)
	if rerr != nil {
		return -1, rerr
	}
	return openat2(dir, resolved)
}

func openat2(dir int, rel string) (int, error) {
	how := &unix.OpenHow{Flags: openFlags, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
	return openRetry(func() (int, error) { return unix.Openat2(dir, rel, how) })
}

// openFallback opens path after checking that it resolves inside root, and
// then that the descriptor is the file the check resolved (same device and
// inode), so that a symlink swapped in between is refused.
func openFallback(root, path string) (int, error) {
	rel, err := resolveInRoot(root, path)
	if err != nil {
		return -1, err
	}
	resolved := filepath.Join(root, rel)
	fd, err := openRetry(func() (int, error) { return unix.Open(resolved, openFlags|unix.O_NOFOLLOW, 0) })
	if err != nil {
		return -1, err
	}
	var opened, now unix.Stat_t
	if err := unix.Fstat(fd, &opened); err != nil {
		unix.Close(fd)
		return -1, err
	}
	again, err := resolveInRoot(root, path)
	if err == nil {
		err = unix.Lstat(filepath.Join(root, again), &now)
	}
	if err != nil || opened.Dev != now.Dev || opened.Ino != now.Ino {
		unix.Close(fd)
		return -1, ErrOutsideRoot
	}
	return fd, nil
}

// resolveInRoot resolves every symlink of path and returns the result
// relative to root (itself resolved), or ErrOutsideRoot.
func resolveInRoot(root, path string) (string, error) {
	r, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	return relInRoot(r, p)
}

// relInRoot is path relative to root, or ErrOutsideRoot if it is not in
// it (lexically).
func relInRoot(root, path string) (string, error) {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", ErrOutsideRoot
	}
	return rel, nil
}

// openRetry calls open again, a bounded number of times, while a signal
// interrupts it (EINTR) or a rename races openat2's resolution (EAGAIN).
func openRetry(open func() (int, error)) (int, error) {
	for i := 0; ; i++ {
		fd, err := open()
		if i == 100 || !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EAGAIN) {
			return fd, err
		}
	}
}

// describeMode names a file type for an error: "a named pipe".
func describeMode(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "of an irregular type"
}
