package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeFlag is a byte size: 1048576, 500M, 128Mi, 512MiB, 1GiB.
type sizeFlag struct{ v *uint64 }

func (s sizeFlag) String() string {
	if s.v == nil {
		return ""
	}
	return formatSize(*s.v)
}

func (s sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s.v = n
	return nil
}

// sizeUnits are the units a size may carry, each also with a "B" after it:
// Kubernetes quantities (500M, 128Mi) and their byte spellings (500MB,
// 128MiB). formatSize spells sizes with the units marked format.
var sizeUnits = []struct {
	prefix string
	mult   uint64
	format bool
}{
	{"Ti", 1 << 40, true}, {"Gi", 1 << 30, true}, {"Mi", 1 << 20, true}, {"Ki", 1 << 10, true},
	{"T", 1e12, false}, {"G", 1e9, false}, {"M", 1e6, false}, {"k", 1e3, false}, {"K", 1e3, false},
	{"", 1, true},
}

// parseSize reads a whole number of bytes with an optional unit, spaces
// allowed around the number: "1048576", "500M", "128Mi", "512 MiB". Its
// errors do not repeat v: the flag and environment parsers quote it.
func parseSize(v string) (uint64, error) {
	s := strings.TrimSpace(v)
	if s == "" {
		return 0, errors.New("empty size")
	}
	if s[0] == '-' {
		return 0, errors.New("negative size")
	}
	end := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(s)
	}
	if end == 0 {
		return 0, errors.New("size needs a number, e.g. 128Mi")
	}
	unit := strings.TrimSpace(s[end:])
	if strings.HasPrefix(unit, ".") {
		return 0, errors.New("size must be a whole number of bytes")
	}
	mult, ok := sizeMultiplier(unit)
	if !ok {
		return 0, fmt.Errorf("unknown size unit %q: want k, M, G, T, Ki, Mi, Gi or Ti, with or without B", unit)
	}
	n, err := strconv.ParseUint(s[:end], 10, 64)
	if err != nil || n > math.MaxUint64/mult {
		return 0, errors.New("size overflows 64 bits")
	}
	return n * mult, nil
}

// sizeMultiplier is the number of bytes one unit stands for.
func sizeMultiplier(unit string) (uint64, bool) {
	prefix := strings.TrimSuffix(unit, "B")
	for _, u := range sizeUnits {
		if u.prefix == prefix {
			return u.mult, true
		}
	}
	return 0, false
}

// formatSize spells n with the largest IEC unit that divides it: 512MiB.
func formatSize(n uint64) string {
	for _, u := range sizeUnits {
		if u.format && n >= u.mult && n%u.mult == 0 {
			return strconv.FormatUint(n/u.mult, 10) + u.prefix + "B"
		}
	}
	return "0"
}
