package main

import (
	"errors"
	"strconv"
	"strings"

	"github.com/imagedrop/imagedrop/importer"
)

// minFreeFlag is --min-free-space: a percentage of the filesystem ("15%")
// or a size ("20Gi"); each replaces the other.
type minFreeFlag struct{ v *importer.MinFree }

func (f minFreeFlag) String() string {
	if f.v == nil {
		return ""
	}
	if f.v.Bytes > 0 {
		return formatSize(f.v.Bytes)
	}
	return strconv.FormatFloat(f.v.Percent, 'g', -1, 64) + "%"
}

func (f minFreeFlag) Set(v string) error {
	s := strings.TrimSpace(v)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		pct, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || pct < 0 || pct >= 100 {
			return errors.New("want a percentage from 0 to below 100, e.g. 15%, or a size, e.g. 20Gi")
		}
		*f.v = importer.MinFree{Percent: pct}
		return nil
	}
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*f.v = importer.MinFree{Bytes: n}
	return nil
}
