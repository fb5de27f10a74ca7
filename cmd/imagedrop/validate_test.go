package main

import (
	"fmt"
	"io"
	"testing"

	"github.com/imagedrop/imagedrop/metrics"
)

// validator is a command's configuration.
type validator interface{ validate() error }

// TestValidateIsPure checks that validate only reports: the configuration
// it was given, valid or not, is the same afterwards.
func TestValidateIsPure(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		build   func(t *testing.T) validator
		wantErr string
	}{
		{"watch defaults", func(t *testing.T) validator { return parsedWatch(t) }, ""},
		{"watch relative dirs", func(t *testing.T) validator {
			return parsedWatch(t, "--images-dir", "images", "--images-dir", "lists")
		}, ""},
		{"watch no dirs", func(t *testing.T) validator {
			c := parsedWatch(t)
			c.watcher.Dirs = nil
			return c
		}, "at least one directory is required"},
		{"watch server without timeouts", func(t *testing.T) validator {
			c := parsedWatch(t)
			c.server = metrics.ServerConfig{Address: ":9365"}
			return c
		}, ""},
		{"watch invalid", func(t *testing.T) validator { return parsedWatch(t, "--log-format", "yaml") },
			`--log-format "yaml": want text or json`},
		{"import defaults", func(t *testing.T) validator { return parsedImport(t, "a.tar") }, ""},
		{"import extra registries", func(t *testing.T) validator {
			return parsedImport(t, "--extra-registry", "r.local", "--extra-registry", "s.local:5000", "a.tar")
		}, ""},
		{"import invalid", func(t *testing.T) validator { return parsedImport(t, "--workers", "0", "a.tar") },
			"--workers must be at least 1, not 0"},
		{"common defaults", func(t *testing.T) validator { return &parsedImport(t).common }, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, want := tt.build(t), tt.build(t)
			if got := errString(cfg.validate()); got != tt.wantErr {
				t.Errorf("validate() = %q; want %q", got, tt.wantErr)
			}
			// Printed, because DeepEqual calls no two funcs (the watcher's
			// Matcher) equal; %+v shows a func as its address.
			if fmt.Sprintf("%+v", cfg) != fmt.Sprintf("%+v", want) {
				t.Errorf("validate changed the configuration:\n got %+v\nwant %+v", cfg, want)
			}
		})
	}
}

// parsedWatch is watch's configuration after args, without validation.
func parsedWatch(t *testing.T, args ...string) *watchConfig {
	t.Helper()
	var cfg watchConfig
	if err := parseFlags(newWatchFlags(&cfg, io.Discard), args, env{}.lookup); err != nil {
		t.Fatalf("parseFlags(%q) = %v", args, err)
	}
	return &cfg
}

// parsedImport is import's configuration after args, without validation.
func parsedImport(t *testing.T, args ...string) *importConfig {
	t.Helper()
	var cfg importConfig
	fs := newImportFlags(&cfg, io.Discard)
	if err := parseFlags(fs, args, env{}.lookup); err != nil {
		t.Fatalf("parseFlags(%q) = %v", args, err)
	}
	cfg.files = fs.Args()
	return &cfg
}
