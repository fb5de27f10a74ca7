package importer

import (
	"testing"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"google.golang.org/protobuf/proto"
)

// TestWriteCodec checks that what writeCodec encodes decodes to the request
// it was given, with the data not copied for a write of data.
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
			out.Free()
		})
	}
}
