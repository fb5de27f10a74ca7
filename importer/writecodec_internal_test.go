package importer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	digest "github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestWriteCodec checks that what writeCodec encodes is, byte for byte,
// what proto.Marshal encodes, and decodes to the request it was given, with
// the data not copied for a write of data.
func TestWriteCodec(t *testing.T) {
	t.Parallel()
	data := []byte("some of a blob")
	for _, tc := range []struct {
		name     string
		req      *contentapi.WriteContentRequest
		zeroCopy bool
	}{
		{"write at 0", &contentapi.WriteContentRequest{Action: contentapi.WriteAction_WRITE, Data: data}, true},
		{"write further on", &contentapi.WriteContentRequest{Action: contentapi.WriteAction_WRITE, Offset: 4 << 30, Data: data}, true},
		{"stat", &contentapi.WriteContentRequest{Action: contentapi.WriteAction_STAT, Ref: "tar-x", Total: 14, Expected: "sha256:ab"}, false},
		{"commit", &contentapi.WriteContentRequest{Action: contentapi.WriteAction_COMMIT, Total: 14, Offset: 14, Expected: "sha256:ab", Labels: map[string]string{"a": "b"}}, false},
		{"write with a ref", &contentapi.WriteContentRequest{Action: contentapi.WriteAction_WRITE, Ref: "tar-x", Data: data}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newWriteCodec()
			out, err := c.Marshal(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Free()
			want, err := proto.Marshal(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := out.Materialize(); !bytes.Equal(got, want) {
				t.Errorf("encoded %x, proto.Marshal gives %x", got, want)
			}
			var got contentapi.WriteContentRequest
			if err := proto.Unmarshal(out.Materialize(), &got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !proto.Equal(&got, tc.req) {
				t.Errorf("decoded %v, want %v", &got, tc.req)
			}
			last := out[len(out)-1].ReadOnlyData()
			if shared := len(last) > 0 && &last[0] == &data[0]; shared != tc.zeroCopy {
				t.Errorf("data sent from the caller's buffer: %v, want %v", shared, tc.zeroCopy)
			}
		})
	}
}

// TestWriteCodecAssumptions fails when a containerd API or gRPC upgrade
// changes what writeCodec takes for granted: the fields of a
// WriteContentRequest (it encodes action, offset and data itself and hands
// a request with any other field set to the proto codec, so a new field
// would be dropped silently) and the proto codec it wraps.
func TestWriteCodecAssumptions(t *testing.T) {
	t.Parallel()
	want := map[protowire.Number]struct {
		name string
		kind protoreflect.Kind
		mine bool // encoded by writeCodec itself
	}{
		writeActionField: {"action", protoreflect.EnumKind, true},
		2:                {"ref", protoreflect.StringKind, false},
		3:                {"total", protoreflect.Int64Kind, false},
		4:                {"expected", protoreflect.StringKind, false},
		writeOffsetField: {"offset", protoreflect.Int64Kind, true},
		writeDataField:   {"data", protoreflect.BytesKind, true},
		7:                {"labels", protoreflect.MessageKind, false}, // a map
	}
	fields := (&contentapi.WriteContentRequest{}).ProtoReflect().Descriptor().Fields()
	if fields.Len() != len(want) {
		t.Errorf("WriteContentRequest has %d fields, writeCodec knows %d: check its Marshal against content.proto", fields.Len(), len(want))
	}
	for i := range fields.Len() {
		f := fields.Get(i)
		w, ok := want[f.Number()]
		switch {
		case !ok:
			t.Errorf("WriteContentRequest field %d (%s) is new to writeCodec, which would drop it from writes of data", f.Number(), f.Name())
		case string(f.Name()) != w.name || f.Kind() != w.kind || f.IsMap() != (w.kind == protoreflect.MessageKind):
			t.Errorf("WriteContentRequest field %d is %s, a %v (map: %v); writeCodec takes it for %s, a %v", f.Number(), f.Name(), f.Kind(), f.IsMap(), w.name, w.kind)
		case w.mine && f.HasPresence():
			t.Errorf("WriteContentRequest field %s has presence; writeCodec leaves out zero values", f.Name())
		}
	}

	c := newWriteCodec()
	if c.CodecV2 == nil {
		t.Fatalf("gRPC has no codec registered as %q for writeCodec to wrap", grpcproto.Name)
	}
	// ForceCodecV2 sends the codec's name as the content-subtype, which
	// containerd must accept.
	if got := c.Name(); got != grpcproto.Name {
		t.Errorf("writeCodec's name = %q, want %q", got, grpcproto.Name)
	}
}

// TestWriteCodecIsUsed writes a blob of several chunks with blobWriter
// through a real gRPC connection to an in-process content service, and
// checks that gRPC encodes each write of data with writeCodec, not copying
// the data, and that the service decodes what was sent.
func TestWriteCodecIsUsed(t *testing.T) {
	t.Parallel()
	srv := &recordingContent{}
	spy := &spyCodec{}
	conn := serveContent(t, srv, func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		forced := false
		for i, o := range opts {
			f, ok := o.(grpc.ForceCodecV2CallOption)
			if !ok {
				continue
			}
			wc, ok := f.CodecV2.(writeCodec)
			if !ok {
				t.Errorf("%s forces codec %T, want writeCodec", method, f.CodecV2)
				continue
			}
			forced = true
			spy.writeCodec = wc
			opts[i] = grpc.ForceCodecV2(spy)
		}
		if !forced {
			t.Errorf("%s is called without grpc.ForceCodecV2(writeCodec)", method)
		}
		return streamer(ctx, desc, cc, method, opts...)
	})

	data := make([]byte, 2*blobChunk+12345) // three writes
	_, _ = rand.NewChaCha8([32]byte{}).Read(data)
	want := digest.FromBytes(data)
	w, err := openBlob(t.Context(), contentapi.NewContentClient(conn), "tar-blob", int64(len(data)), "")
	if err != nil {
		t.Fatalf("openBlob: %v", err)
	}
	defer w.close()
	got, err := w.copy(bytes.NewReader(data), int64(len(data)), &chunks{})
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	if got != want {
		t.Errorf("copy = %s, want %s", got, want)
	}
	if err := w.commit(int64(len(data)), want); err != nil {
		t.Fatalf("commit: %v", err)
	}

	if !bytes.Equal(srv.committed(), data) {
		t.Errorf("the service received other bytes than those written")
	}
	writes, noCopy := spy.counts()
	if wantWrites := 3; writes != wantWrites || noCopy != wantWrites {
		t.Errorf("writeCodec encoded %d writes of data, %d of them without a copy; want %d and %d", writes, noCopy, wantWrites, wantWrites)
	}
}

// serveContent serves content on an in-process gRPC server and returns a
// connection to it whose streams go through intercept.
func serveContent(t *testing.T, content contentapi.ContentServer, intercept grpc.StreamClientInterceptor) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20)) // containerd's limit; a write is blobChunk and a few bytes
	contentapi.RegisterContentServer(s, content)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///content",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStreamInterceptor(intercept))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		s.Stop()
		<-served
	})
	return conn
}

// recordingContent is a content service whose write sessions keep what
// they are sent, answering as containerd does, and remember what was
// committed.
type recordingContent struct {
	contentapi.UnimplementedContentServer
	mu   sync.Mutex
	blob []byte
}

func (s *recordingContent) Write(stream contentapi.Content_WriteServer) error {
	var data []byte
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch req.Action {
		case contentapi.WriteAction_WRITE:
			if req.Offset != int64(len(data)) {
				return status.Errorf(codes.OutOfRange, "write at %d, have %d", req.Offset, len(data))
			}
			data = append(data, req.Data...)
		case contentapi.WriteAction_COMMIT:
			s.mu.Lock()
			s.blob = data
			s.mu.Unlock()
		}
		resp := &contentapi.WriteContentResponse{Action: req.Action, Offset: int64(len(data)), Total: req.Total, Digest: digest.FromBytes(data).String()}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (s *recordingContent) committed() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blob
}

// spyCodec is writeCodec, counting the writes of data it encodes and those
// it encodes without copying the data.
type spyCodec struct {
	writeCodec
	mu             sync.Mutex
	writes, noCopy int
}

func (c *spyCodec) Marshal(v any) (mem.BufferSlice, error) {
	out, err := c.writeCodec.Marshal(v)
	req, ok := v.(*contentapi.WriteContentRequest)
	if err != nil || !ok || req.Action != contentapi.WriteAction_WRITE || len(req.Data) == 0 {
		return out, err
	}
	last := out[len(out)-1].ReadOnlyData()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	if len(last) > 0 && &last[0] == &req.Data[0] {
		c.noCopy++
	}
	return out, err
}

func (c *spyCodec) counts() (writes, noCopy int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, c.noCopy
}
