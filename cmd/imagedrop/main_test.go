package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
)

func TestExitCode(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		err        error
		want       int
		wantStderr string
	}{
		{"success", nil, 0, ""},
		{"help", flag.ErrHelp, 0, ""},
		{"help from flag parsing", usageError{flag.ErrHelp}, 0, ""},
		{"usage", usageError{errors.New("no command given")}, 2, "imagedrop: no command given\n"},
		{"wrapped usage", fmt.Errorf("watch: %w", usageError{errors.New("bad flag")}), 2, "imagedrop: watch: bad flag\n"},
		{"files failed, already reported", fmt.Errorf("2 of 3 files: %w", errFilesFailed), 1, ""},
		{"other", errors.New("containerd does not answer"), 1, "imagedrop: containerd does not answer\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr strings.Builder
			got := exitCode(tt.err, &stderr)
			if got != tt.want {
				t.Errorf("exitCode(%v) = %d; want %d", tt.err, got, tt.want)
			}
			if stderr.String() != tt.wantStderr {
				t.Errorf("exitCode(%v) wrote %q; want %q", tt.err, stderr.String(), tt.wantStderr)
			}
		})
	}
}

// TestRunExitCode checks the exit status of calls that end before imagedrop
// talks to containerd.
func TestRunExitCode(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		args []string
		want int
	}{
		{"no command", nil, 2},
		{"unknown command", []string{"serve"}, 2},
		{"help", []string{"help"}, 0},
		{"version", []string{"version"}, 0},
		{"import help", []string{"import", "-h"}, 0},
		{"import unknown flag", []string{"import", "--no-such-flag", "a.tar"}, 2},
		{"import no files", []string{"import"}, 2},
		{"import bad size", []string{"import", "--zstd-max-window", "1Xi", "a.tar"}, 2},
		{"watch help", []string{"watch", "--help"}, 0},
		{"watch arguments", []string{"watch", "a.tar"}, 2},
		{"watch invalid", []string{"watch", "--log-format", "yaml"}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr strings.Builder
			err := run(t.Context(), tt.args, &stdout, &stderr)
			if got := exitCode(err, &stderr); got != tt.want {
				t.Errorf("run(%q) exit code = %d (err %v); want %d", tt.args, got, err, tt.want)
			}
		})
	}
}
