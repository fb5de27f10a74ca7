package importer

import (
	"context"
	"errors"
	"fmt"
)

// ReferenceResult is the outcome of one reference of a list.
type ReferenceResult struct {
	Line      int    `json:"line"`
	Reference string `json:"reference"`
	Outcome   string `json:"outcome"`
	Error     string `json:"error,omitempty"`
}

// ImportList pre-pulls the references listed in the file at path.
func (im *Importer) ImportList(ctx context.Context, path string) (Result, error) {
	return Result{Path: path, Kind: KindList}, fmt.Errorf("import %s: %w", path, errors.ErrUnsupported)
}
