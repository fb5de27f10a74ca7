package main

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// answerSink answers every call with err.
type answerSink struct{ err error }

func (s answerSink) Create(e *corev1.Event) (*corev1.Event, error)          { return e, s.err }
func (s answerSink) Update(e *corev1.Event) (*corev1.Event, error)          { return e, s.err }
func (s answerSink) Patch(e *corev1.Event, _ []byte) (*corev1.Event, error) { return e, s.err }

// TestRetryForbiddenSink checks that a Forbidden answer reaches client-go's
// recorder as no status error (which it would drop, not retry) and every
// other answer as it was.
func TestRetryForbiddenSink(t *testing.T) {
	t.Parallel()
	gr := schema.GroupResource{Resource: "events"}
	forbidden := apierrors.NewForbidden(gr, "e", errors.New("RBAC: not yet"))
	notFound := apierrors.NewNotFound(gr, "e")
	other := errors.New("connection refused")
	for _, tt := range []struct {
		name       string
		answer     error
		wantStatus bool // still an *apierrors.StatusError
		wantNil    bool
	}{
		{"forbidden", forbidden, false, false},
		{"not found", notFound, true, false},
		{"connection", other, false, false},
		{"ok", nil, false, true},
	} {
		s := retryForbiddenSink{answerSink{tt.answer}}
		e := &corev1.Event{}
		calls := map[string]func() error{
			"Create": func() error { _, err := s.Create(e); return err },
			"Update": func() error { _, err := s.Update(e); return err },
			"Patch":  func() error { _, err := s.Patch(e, nil); return err },
		}
		for call, f := range calls {
			err := f()
			if tt.wantNil {
				if err != nil {
					t.Errorf("%s %s: %v, want nil", tt.name, call, err)
				}
				continue
			}
			if err == nil {
				t.Errorf("%s %s: nil error", tt.name, call)
				continue
			}
			var st *apierrors.StatusError
			if got := errors.As(err, &st); got != tt.wantStatus {
				t.Errorf("%s %s: %T is a StatusError: %v, want %v", tt.name, call, err, got, tt.wantStatus)
			}
			if tt.answer == notFound && !apierrors.IsNotFound(err) {
				t.Errorf("%s %s: %v is no longer NotFound (the recorder's Patch falls back to Create on it)", tt.name, call, err)
			}
		}
	}
}
