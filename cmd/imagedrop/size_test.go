package main

import (
	"flag"
	"io"
	"math"
	"testing"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want uint64
	}{
		{"0", 0},
		{"1048576", 1 << 20},
		{"10B", 10},
		{"1k", 1000},
		{"1K", 1000},
		{"1kB", 1000},
		{"1KB", 1000},
		{"500M", 500e6},
		{"500MB", 500e6},
		{"2G", 2e9},
		{"2GB", 2e9},
		{"3T", 3e12},
		{"3TB", 3e12},
		{"512Ki", 512 << 10},
		{"512KiB", 512 << 10},
		{"128Mi", 128 << 20},
		{"128MiB", 128 << 20},
		{"1Gi", 1 << 30},
		{"1GiB", 1 << 30},
		{"2Ti", 2 << 40},
		{"2TiB", 2 << 40},
		{"512 MiB", 512 << 20},
		{" 128Mi ", 128 << 20},
		{"0128Mi", 128 << 20},
		{"18446744073709551615", math.MaxUint64},
		{"18446744073709551615B", math.MaxUint64},
		{"16777215Ti", 16777215 << 40},
		{"18446744T", 18446744e12},
	} {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := parseSize(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("parseSize(%q) = %d, %v; want %d, nil", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseSizeErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in, want string
	}{
		{"", "empty size"},
		{"  ", "empty size"},
		{"-1", "negative size"},
		{"-128Mi", "negative size"},
		{"+1", "size needs a number, e.g. 128Mi"},
		{"Mi", "size needs a number, e.g. 128Mi"},
		{"abc", "size needs a number, e.g. 128Mi"},
		{"1.5Gi", "size must be a whole number of bytes"},
		{"12XB", `unknown size unit "XB": want k, M, G, T, Ki, Mi, Gi or Ti, with or without B`},
		{"1m", `unknown size unit "m": want k, M, G, T, Ki, Mi, Gi or Ti, with or without B`},
		{"1ki", `unknown size unit "ki": want k, M, G, T, Ki, Mi, Gi or Ti, with or without B`},
		{"1BB", `unknown size unit "BB": want k, M, G, T, Ki, Mi, Gi or Ti, with or without B`},
		{"1Pi", `unknown size unit "Pi": want k, M, G, T, Ki, Mi, Gi or Ti, with or without B`},
		{"1 2", `unknown size unit "2": want k, M, G, T, Ki, Mi, Gi or Ti, with or without B`},
		{"18446744073709551616", "size overflows 64 bits"},
		{"99999999999999999999999Mi", "size overflows 64 bits"},
		{"16777216Ti", "size overflows 64 bits"},
		{"18446745T", "size overflows 64 bits"},
		{"18446744073709551616B", "size overflows 64 bits"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := parseSize(tt.in)
			if err == nil {
				t.Fatalf("parseSize(%q) = %d, nil; want error %q", tt.in, got, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("parseSize(%q) error = %q; want %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   uint64
		want string
	}{
		{0, "0"},
		{1, "1B"},
		{1000, "1000B"},
		{1 << 10, "1KiB"},
		{1536, "1536B"},
		{512 << 20, "512MiB"},
		{1 << 30, "1GiB"},
		{3 << 40, "3TiB"},
		{math.MaxUint64, "18446744073709551615B"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			got := formatSize(tt.in)
			if got != tt.want {
				t.Errorf("formatSize(%d) = %q; want %q", tt.in, got, tt.want)
			}
			back, err := parseSize(got)
			if err != nil || back != tt.in {
				t.Errorf("parseSize(formatSize(%d)) = %d, %v; want %d, nil", tt.in, back, err, tt.in)
			}
		})
	}
}

// TestSizeFlag checks the size through the flag package, as --zstd-max-window
// is parsed, and that a bad value leaves the default in place.
func TestSizeFlag(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		args    []string
		want    uint64
		wantErr string
	}{
		{"default", nil, 512 << 20, ""},
		{"kubernetes", []string{"--size", "128Mi"}, 128 << 20, ""},
		{"bytes", []string{"--size=1048576"}, 1 << 20, ""},
		{"overflow", []string{"--size", "20000000Ti"}, 512 << 20,
			`invalid value "20000000Ti" for flag -size: size overflows 64 bits`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := uint64(512 << 20)
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.Var(sizeFlag{&got}, "size", "a size")
			err := fs.Parse(tt.args)
			if gotErr := errString(err); gotErr != tt.wantErr {
				t.Errorf("Parse(%q) error = %q; want %q", tt.args, gotErr, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Parse(%q) size = %d; want %d", tt.args, got, tt.want)
			}
		})
	}
}

// errString is err's message, or "" for nil.
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
