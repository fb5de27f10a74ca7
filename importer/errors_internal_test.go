package importer

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestIsPermanent(t *testing.T) {
	t.Parallel()
	bad := invalid(errors.New("manifest.json: not JSON"))
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", errors.New("connection refused"), false},
		{"context", context.Canceled, false},
		{"invalid", bad, true},
		{"wrapped invalid", fmt.Errorf("import a.tar: %w", bad), true},
		{"joined", errors.Join(errors.New("x"), bad), true},
	} {
		if got := IsPermanent(tt.err); got != tt.want {
			t.Errorf("%s: IsPermanent = %v, want %v", tt.name, got, tt.want)
		}
	}
	if invalid(nil) != nil {
		t.Error("invalid(nil) is not nil")
	}
	if got := bad.Error(); got != "manifest.json: not JSON" {
		t.Errorf("Error() = %q, want the wrapped text unchanged", got)
	}
}
