package importer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	digest "github.com/opencontainers/go-digest"
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

// recorder is a write session that keeps what it was sent and checks, as it
// answers each write, that the data sent has not changed since.
type recorder struct {
	contentapi.Content_WriteClient // only Send and Recv are used
	got                            []byte
	unanswered                     [][2][]byte // data as sent, and a copy taken then
	offset                         int         // what the answers so far cover
}

func (r *recorder) Send(req *contentapi.WriteContentRequest) error {
	kept := slices.Clone(req.Data)
	r.unanswered = append(r.unanswered, [2][]byte{req.Data, kept})
	r.got = append(r.got, kept...)
	return nil
}

func (r *recorder) Recv() (*contentapi.WriteContentResponse, error) {
	w := r.unanswered[0]
	r.unanswered = r.unanswered[1:]
	if !bytes.Equal(w[0], w[1]) {
		return nil, errors.New("a buffer was filled again before its write was answered")
	}
	r.offset += len(w[1])
	return &contentapi.WriteContentResponse{Offset: int64(r.offset), Digest: digest.FromBytes(r.got[:r.offset]).String()}, nil
}

// TestCopyReusesChunks writes two blobs of several chunks from one set of
// buffers: each arrives whole, no buffer is refilled while its write is in
// flight, and the second blob allocates no buffer.
func TestCopyReusesChunks(t *testing.T) {
	t.Parallel()
	var bufs chunks
	var first *byte
	for i, size := range []int{2*blobChunk + 12345, blobChunk + 1} {
		blob := make([]byte, size)
		_, _ = rand.NewChaCha8([32]byte{byte(i)}).Read(blob) // no two chunks alike
		rec := &recorder{}
		w := &blobWriter{stream: rec, cancel: func() {}}
		d, err := w.copy(bytes.NewReader(blob), int64(size), &bufs)
		if err != nil {
			t.Fatalf("blob %d: %v", i, err)
		}
		if !bytes.Equal(rec.got, blob) || d != digest.FromBytes(blob) {
			t.Errorf("blob %d: containerd got %d bytes (digest %s); want the %d sent (%s)", i, len(rec.got), d, size, digest.FromBytes(blob))
		}
		if i == 0 {
			first = &bufs[0][0]
		} else if &bufs[0][0] != first {
			t.Errorf("blob %d: a new buffer was made; want the first blob's", i)
		}
	}
}
