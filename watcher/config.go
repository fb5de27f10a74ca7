package watcher

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Config is what the watcher needs to know.
type Config struct {
	// Dirs are the directories watched for image archives and lists,
	// subdirectories included. They need not exist yet.
	Dirs []string
	// RescanDirs are more such directories, found by rescans every Rescan
	// instead of inotify, for network filesystems (NFS, CephFS, SMB), where
	// inotify does not see what other machines write.
	RescanDirs []string
	// Rescan is how often RescanDirs, and directories whose inotify watches
	// could not be added (the watch limit was reached), are walked again.
	Rescan time.Duration
	// Match tells which files to process, and their kind; required.
	Match Matcher
	// Companion, if set, tells the file a companion (a signature or
	// checksum beside it, not an input of its own) belongs to: when one
	// appears, changes or goes, its file is processed again.
	Companion func(path string) (file string, ok bool)
	// StateFile remembers what was done for which file across restarts.
	// Empty keeps the state in memory only.
	StateFile string
	// Workers is how many files are processed at once.
	Workers int
	// Settle is how long a file written in place must stay unchanged (size
	// and mtime) before it is processed.
	Settle time.Duration
	// RetryMin is the first delay before a failed file is retried; the delay
	// doubles with each failure up to RetryMax, with jitter.
	RetryMin time.Duration
	// RetryMax caps the retry delay.
	RetryMax time.Duration
	// StallAfter is how long a running job may go without progress before
	// Healthy fails (so that a liveness probe restarts a wedged process)
	// and Status marks it stalled; 0 turns this off.
	StallAfter time.Duration
	// Grace is how long running jobs may finish after shutdown begins before
	// their contexts are cancelled.
	Grace time.Duration
}

// DefaultConfig returns the defaults of a node daemon; Dirs and StateFile
// are left for the caller.
func DefaultConfig() Config {
	return Config{
		Workers: 2,
		Settle:  time.Second,
		Rescan:  10 * time.Second,
		// Above anything a healthy job goes without progress: a list's
		// pulls report it while they wait within their own timeout.
		StallAfter: 10 * time.Minute,
		RetryMin:   5 * time.Second,
		RetryMax:   10 * time.Minute,
		Grace:      30 * time.Second,
	}
}

// Validate reports the first thing wrong with c.
func (c Config) Validate() error {
	if len(c.Dirs)+len(c.RescanDirs) == 0 {
		return errors.New("at least one directory is required")
	}
	clean := make([]string, 0, len(c.Dirs)+len(c.RescanDirs))
	for _, d := range append(slices.Clip(c.Dirs), c.RescanDirs...) {
		if strings.TrimSpace(d) == "" {
			return errors.New("directory must not be empty")
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			return fmt.Errorf("directory %q: %w", d, err)
		}
		for _, o := range clean {
			if o == abs || within(abs, o) || within(o, abs) {
				return fmt.Errorf("directories %q and %q overlap", o, abs)
			}
		}
		clean = append(clean, abs)
	}
	if c.Match == nil {
		return errors.New("a file matcher is required")
	}
	if c.Workers < 1 {
		return fmt.Errorf("workers must be at least 1, got %d", c.Workers)
	}
	if c.Settle < 0 {
		return fmt.Errorf("settle must not be negative, got %s", c.Settle)
	}
	if c.RetryMin <= 0 {
		return fmt.Errorf("retry minimum must be positive, got %s", c.RetryMin)
	}
	if c.RetryMax < c.RetryMin {
		return fmt.Errorf("retry maximum %s is below retry minimum %s", c.RetryMax, c.RetryMin)
	}
	if c.Rescan <= 0 {
		return fmt.Errorf("rescan interval must be positive, got %s", c.Rescan)
	}
	if c.StallAfter < 0 {
		return fmt.Errorf("stall timeout must not be negative, got %s", c.StallAfter)
	}
	if c.Grace < 0 {
		return fmt.Errorf("grace must not be negative, got %s", c.Grace)
	}
	return nil
}

// within reports whether path lies strictly below dir; both are clean.
func within(path, dir string) bool {
	if dir == string(filepath.Separator) {
		return path != dir && strings.HasPrefix(path, dir)
	}
	return strings.HasPrefix(path, dir+string(filepath.Separator))
}
