package importer

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"testing"
)

// TestHashPipe: whatever the sizes of the writes, the hash behind the pipe
// sees every byte in order once finish returns.
func TestHashPipe(t *testing.T) {
	data := make([]byte, 3*hashPipeChunk*hashPipeDepth+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	want := sha256.Sum256(data)
	// 0 stands for writes of every size in turn, small buffers made first.
	for _, size := range []int{1, 1000, hashPipeChunk - 1, hashPipeChunk, hashPipeChunk + 1, 5 * hashPipeChunk, len(data), 0} {
		h := sha256.New()
		p := newHashPipe(h)
		sizes := []int{1, 7, 1000, hashPipeChunk + 3, 4 * hashPipeChunk}
		for i, b := 0, data; len(b) > 0; i++ {
			n := min(size, len(b))
			if size == 0 {
				n = min(sizes[i%len(sizes)], len(b))
			}
			if k, err := p.Write(b[:n]); k != n || err != nil {
				t.Fatalf("writes of %d: Write = %d, %v", size, k, err)
			}
			b = b[n:]
		}
		p.finish()
		p.finish() // twice is harmless
		if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
			t.Errorf("writes of %d bytes: sha256 %x, want %x", size, got, want)
		}
	}
}

// gatedWriter holds every write until gate is closed.
type gatedWriter struct {
	gate chan struct{}
	w    io.Writer
}

func (g gatedWriter) Write(p []byte) (int, error) {
	<-g.gate
	return g.w.Write(p)
}

// TestHashPipeCopies: a buffer written may be reused by the writer at once,
// as the readers of a stream do; the hash, which has not run yet, still
// sees what was written.
func TestHashPipeCopies(t *testing.T) {
	h := sha256.New()
	gate := make(chan struct{})
	p := newHashPipe(gatedWriter{gate, h})
	buf := []byte("first")
	p.Write(buf)
	copy(buf, "XXXXX")
	close(gate)
	p.finish()
	want := sha256.Sum256([]byte("first"))
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Errorf("sha256 %x, want that of %q", got, "first")
	}
}
