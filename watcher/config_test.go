package watcher_test

import (
	"strings"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/watcher"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	valid := func() watcher.Config {
		c := watcher.DefaultConfig()
		c.Dirs = []string{"/var/lib/imagedrop/images"}
		c.Match = watcher.MatchForTest
		return c
	}
	tests := []struct {
		name    string
		change  func(*watcher.Config)
		wantErr string // substring; empty for valid
	}{
		{"defaults", func(*watcher.Config) {}, ""},
		{"two dirs", func(c *watcher.Config) { c.Dirs = append(c.Dirs, "/srv/images") }, ""},
		{"no dirs", func(c *watcher.Config) { c.Dirs = nil }, "at least one directory"},
		{"rescanned dirs only", func(c *watcher.Config) { c.Dirs, c.RescanDirs = nil, c.Dirs }, ""},
		{"watched and rescanned overlap", func(c *watcher.Config) { c.RescanDirs = []string{"/var/lib/imagedrop/images/nfs"} }, "overlap"},
		{"no matcher", func(c *watcher.Config) { c.Match = nil }, "matcher is required"},
		{"no rescan interval", func(c *watcher.Config) { c.Rescan = 0 }, "rescan interval"},
		{"negative stall timeout", func(c *watcher.Config) { c.StallAfter = -time.Second }, "stall timeout"},
		{"no stall timeout", func(c *watcher.Config) { c.StallAfter = 0 }, ""},
		{"empty dir", func(c *watcher.Config) { c.Dirs = []string{" "} }, "must not be empty"},
		{"same dir twice", func(c *watcher.Config) { c.Dirs = append(c.Dirs, "/var/lib/imagedrop/images/") }, "overlap"},
		{"nested dirs", func(c *watcher.Config) { c.Dirs = append(c.Dirs, "/var/lib/imagedrop") }, "overlap"},
		{"no workers", func(c *watcher.Config) { c.Workers = 0 }, "workers"},
		{"negative settle", func(c *watcher.Config) { c.Settle = -time.Second }, "settle"},
		{"zero retry", func(c *watcher.Config) { c.RetryMin = 0 }, "retry minimum"},
		{"max below min", func(c *watcher.Config) { c.RetryMax = time.Second }, "retry maximum"},
		{"negative grace", func(c *watcher.Config) { c.Grace = -1 }, "grace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := valid()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}
