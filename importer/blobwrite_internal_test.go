package importer

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// answers is a content service whose write sessions answer their first
// message with the next error of errs, then with a status.
type answers struct {
	errs     []error
	sessions int
}

func (a *answers) Write(context.Context, ...grpc.CallOption) (contentapi.Content_WriteClient, error) {
	var err error
	if a.sessions < len(a.errs) {
		err = a.errs[a.sessions]
	}
	a.sessions++
	return &session{err: err}, nil
}

type session struct {
	contentapi.Content_WriteClient // only Send, Recv and CloseSend are used
	err                            error
	closed                         bool
}

func (s *session) Send(*contentapi.WriteContentRequest) error { return nil }
func (s *session) CloseSend() error                           { s.closed = true; return nil }
func (s *session) Recv() (*contentapi.WriteContentResponse, error) {
	switch {
	case s.err != nil:
		return nil, s.err
	case s.closed:
		return nil, io.EOF
	}
	return &contentapi.WriteContentResponse{Offset: 7, Digest: "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}, nil
}

// TestOpenBlobWaitsForLockOnly checks which "unavailable" answers openBlob
// waits out: a ref that another session writes (containerd's message
// says it is locked), not a containerd that cannot be reached.
func TestOpenBlobWaitsForLockOnly(t *testing.T) {
	t.Parallel()
	locked := status.Error(codes.Unavailable, "ref k8s.io/1/tar-blobs/sha256/ab locked for 12ms (since 2026-11-27 10:00:00): unavailable")
	down := status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial unix /run/containerd/containerd.sock: connect: no such file or directory\"")

	a := &answers{errs: []error{locked, locked}}
	w, err := openBlob(context.Background(), a, "tar-x", 7, "")
	if err != nil {
		t.Fatalf("openBlob after two locked answers: %v", err)
	}
	if a.sessions != 3 || w.offset != 7 {
		t.Errorf("sessions = %d, offset = %d; want 3 (two waits) and 7", a.sessions, w.offset)
	}
	w.close()

	a = &answers{errs: []error{down, nil}}
	if _, err := openBlob(context.Background(), a, "tar-x", 7, ""); err == nil || a.sessions != 1 {
		t.Errorf("openBlob with containerd unreachable = %v after %d sessions; want its error after 1", err, a.sessions)
	}

	a = &answers{errs: slices.Repeat([]error{locked}, 1000)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := openBlob(ctx, a, "tar-x", 7, ""); !isLocked(err) {
		t.Errorf("openBlob locked until the context ends = %v; want the locked error", err)
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("openBlob returned before its context ended")
	}
}
