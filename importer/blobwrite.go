package importer

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	digest "github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
)

// contentWrites opens write sessions of containerd's content service.
type contentWrites interface {
	Write(ctx context.Context, opts ...grpc.CallOption) (contentapi.Content_WriteClient, error)
}

var _ contentWrites = (contentapi.ContentClient)(nil)

// writeWindow is how many writes of one blob are in flight at once: one that
// containerd is storing while the next is read and sent. containerd handles
// the writes of a session in order, answering each.
const writeWindow = 2

// blobChunk is the size of the writes of a blob to containerd; a gRPC
// message of containerd's client holds up to 8 MiB.
const blobChunk = 4 << 20

// chunks are the buffers the writes of a blob are sent from (see
// blobWriter.copy), one per write in flight, kept from blob to blob so that
// an import allocates them once, not per blob. Each is made only as large
// as the blobs so far needed, up to blobChunk: small archives do not pay
// for (and clear) whole chunks.
type chunks [writeWindow][]byte

// buffer returns the i-th buffer, at least n bytes long.
func (c *chunks) buffer(i, n int) []byte {
	if len(c[i]) < n {
		c[i] = make([]byte, n)
	}
	return c[i]
}

// blobWriter is a write session of containerd's content service for one
// blob. The client's content.Writer sends a write only once containerd has
// answered the one before, so reading the archive and sending each chunk
// took turns with containerd's hashing and writing; blobWriter keeps
// writeWindow writes in flight, and the two overlap.
type blobWriter struct {
	stream  contentapi.Content_WriteClient
	cancel  context.CancelFunc
	offset  int64         // what containerd held under the ref when the session opened
	digest  digest.Digest // of what containerd holds, as it last said
	hashing bool          // containerd does not say: hash here
}

// openBlob opens the session that writes the blob ref of size bytes.
// containerd answers errdefs.ErrAlreadyExists if expected is set and it
// holds that blob already. While another session writes ref, it waits and
// tries again, as the client's content.OpenWriter does; but a containerd
// that cannot be reached fails it at once, so that the file is retried
// later rather than waiting here.
func openBlob(ctx context.Context, writes contentWrites, ref string, size int64, expected digest.Digest) (*blobWriter, error) {
	for wait := 16 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		w, err := openSession(ctx, writes, ref, size, expected)
		if !isLocked(err) {
			return w, err
		}
		t := time.NewTimer(rand.N(wait))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
	}
}

// isLocked reports containerd's answer that another session is writing the
// ref: "unavailable", as is a connection that failed, but with a message
// saying the ref is locked (content/local/locks.go).
func isLocked(err error) bool {
	return errdefs.IsUnavailable(err) && strings.Contains(err.Error(), " locked")
}

func openSession(ctx context.Context, writes contentWrites, ref string, size int64, expected digest.Digest) (*blobWriter, error) {
	ctx, cancel := context.WithCancel(ctx)
	s, err := writes.Write(ctx, grpc.ForceCodecV2(newWriteCodec()))
	if err != nil {
		cancel()
		return nil, errgrpc.ToNative(err)
	}
	w := &blobWriter{stream: s, cancel: cancel}
	resp, err := w.roundTrip(&contentapi.WriteContentRequest{
		Action: contentapi.WriteAction_STAT, Ref: ref, Total: size, Expected: expected.String(),
	})
	if err != nil {
		cancel()
		return nil, err
	}
	// A fresh session's status carries the digest of nothing yet written;
	// a containerd that sends none does not send it with writes either.
	w.offset, w.hashing = resp.Offset, resp.Digest == ""
	return w, nil
}

// close ends the session, and returns once containerd has closed the
// ingest (which unlocks ref). An ingest left uncommitted stays with the
// import's lease, which removes it.
func (w *blobWriter) close() {
	_ = w.stream.CloseSend()
	for {
		if _, err := w.stream.Recv(); err != nil {
			break
		}
	}
	w.cancel()
}

// send sends req without waiting for the answer. When containerd has ended
// the session, its error is the one returned.
func (w *blobWriter) send(req *contentapi.WriteContentRequest) error {
	err := w.stream.Send(req)
	if errors.Is(err, io.EOF) {
		if _, rerr := w.stream.Recv(); rerr != nil {
			err = rerr
		}
	}
	if err != nil {
		return errgrpc.ToNative(err)
	}
	return nil
}

// recv waits for containerd's next answer.
func (w *blobWriter) recv() (*contentapi.WriteContentResponse, error) {
	resp, err := w.stream.Recv()
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	if resp.Digest != "" {
		w.digest = digest.Digest(resp.Digest)
	}
	return resp, nil
}

func (w *blobWriter) roundTrip(req *contentapi.WriteContentRequest) (*contentapi.WriteContentResponse, error) {
	if err := w.send(req); err != nil {
		return nil, err
	}
	return w.recv()
}

// copy writes the size bytes of r from the start of the ingest (dropping
// whatever an interrupted import left in it), in chunks of up to blobChunk
// bytes sent from bufs, and returns the digest of what was written. It
// reads at most size bytes; fewer is an error. A buffer is filled again
// only once containerd has answered the write sent from it (gRPC may hold
// a message it was given until then), and all are answered on return.
func (w *blobWriter) copy(r io.Reader, size int64, bufs *chunks) (digest.Digest, error) {
	chunk := int(min(max(size, 1), blobChunk))
	var ends [writeWindow]int64 // the offset each write in flight ends at
	var h hash.Hash
	if w.hashing {
		h = digest.Canonical.Hash()
	}
	var n int64 // sent
	sent, answered := 0, 0
	answer := func() error {
		resp, err := w.recv()
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if want := ends[answered%writeWindow]; resp.Offset != want {
			return fmt.Errorf("containerd is at offset %d after a write up to %d: %w", resp.Offset, want, io.ErrShortWrite)
		}
		answered++
		return nil
	}
	for n < size {
		if sent-answered == writeWindow {
			if err := answer(); err != nil {
				return "", err
			}
		}
		b := bufs.buffer(sent%writeWindow, chunk)
		m, err := io.ReadFull(r, b[:min(int64(chunk), size-n)])
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return "", invalid(fmt.Errorf("unexpected copy size %d, expected %d: %w", n+int64(m), size, io.ErrUnexpectedEOF))
		}
		if err != nil {
			return "", readFailure(err)
		}
		// Offset 0 makes containerd truncate an interrupted ingest first.
		if err := w.send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_WRITE, Offset: n, Data: b[:m]}); err != nil {
			return "", fmt.Errorf("write: %w", err)
		}
		if h != nil {
			h.Write(b[:m])
		}
		n += int64(m)
		ends[sent%writeWindow] = n
		sent++
	}
	for answered < sent {
		if err := answer(); err != nil {
			return "", err
		}
	}
	switch {
	case size == 0:
		return digest.Canonical.FromBytes(nil), nil
	case h != nil:
		return digest.NewDigest(digest.Canonical, h), nil
	}
	return w.digest, nil
}

// commit commits the size bytes written as the blob dgst, with opts.
func (w *blobWriter) commit(size int64, dgst digest.Digest, opts ...content.Opt) error {
	var info content.Info
	for _, opt := range opts {
		if err := opt(&info); err != nil {
			return err
		}
	}
	resp, err := w.roundTrip(&contentapi.WriteContentRequest{
		Action: contentapi.WriteAction_COMMIT, Total: size, Offset: size, Expected: dgst.String(), Labels: info.Labels,
	})
	if err != nil {
		return err
	}
	if resp.Offset != size {
		return fmt.Errorf("containerd committed %d bytes, expected %d", resp.Offset, size)
	}
	if resp.Digest != "" && digest.Digest(resp.Digest) != dgst {
		return fmt.Errorf("containerd committed %s, expected %s", resp.Digest, dgst)
	}
	return nil
}
