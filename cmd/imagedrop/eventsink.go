package main

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/record"
)

// retryForbiddenSink is an event sink whose Forbidden answers client-go's
// recorder retries (12 tries, 10 s apart) instead of dropping the Event.
// A kube-apiserver that has just started serves requests before its
// authorizer has read the RBAC objects, and denies them meanwhile: without
// this, the Event that the preload completed, sent when the API server
// came back from an outage, could be lost for good. The recorder gives up
// only on a status error, so the 403 is handed on as a plain error; every
// other answer is handed on as it is.
type retryForbiddenSink struct{ record.EventSink }

func (s retryForbiddenSink) Create(e *corev1.Event) (*corev1.Event, error) {
	got, err := s.EventSink.Create(e)
	return got, retriable(err)
}

func (s retryForbiddenSink) Update(e *corev1.Event) (*corev1.Event, error) {
	got, err := s.EventSink.Update(e)
	return got, retriable(err)
}

func (s retryForbiddenSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	got, err := s.EventSink.Patch(e, data)
	return got, retriable(err)
}

// forbiddenError is a Forbidden answer as an error that is no
// *apierrors.StatusError.
type forbiddenError struct{ msg string }

func (e forbiddenError) Error() string { return e.msg }

func retriable(err error) error {
	if apierrors.IsForbidden(err) {
		return forbiddenError{fmt.Sprintf("%v (retried: an API server that just started may deny until its authorizer has synced)", err)}
	}
	return err
}
