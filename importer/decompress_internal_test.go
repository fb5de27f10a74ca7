package importer

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func TestReadAheadReturnsTheStream(t *testing.T) {
	data := make([]byte, 5<<20+123)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	errBroken := errors.New("broken stream")
	for _, tt := range []struct {
		name    string
		src     io.Reader
		want    []byte
		wantErr error
	}{
		{"whole", bytes.NewReader(data), data, nil},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data[:100<<10])), data[:100<<10], nil},
		{"data with EOF", iotest.DataErrReader(bytes.NewReader(data)), data, nil},
		{"empty", bytes.NewReader(nil), nil, nil},
		{"truncated", io.MultiReader(bytes.NewReader(data[:3<<20]), iotest.ErrReader(io.ErrUnexpectedEOF)), data[:3<<20], io.ErrUnexpectedEOF},
		{"failing", io.MultiReader(bytes.NewReader(data[:7]), iotest.ErrReader(errBroken)), data[:7], errBroken},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ra := newReadAhead(tt.src, 64<<10, 3)
			defer ra.Close()
			got, err := io.ReadAll(iotest.HalfReader(ra))
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("read %d bytes, want the %d bytes of the source", len(got), len(tt.want))
			}
			// The error stays: a second read gives it again.
			if n, err2 := ra.Read(make([]byte, 10)); n != 0 || err2 != err && !(err == nil && err2 == io.EOF) {
				t.Errorf("read after the end = %d, %v; want 0, %v", n, err2, err)
			}
		})
	}
}

func TestReadAheadCloseStopsReading(t *testing.T) {
	src := &countReader{}
	ra := newReadAhead(src, 1<<10, 2)
	if _, err := io.ReadFull(ra, make([]byte, 3000)); err != nil {
		t.Fatal(err)
	}
	ra.Close() // returns only once the goroutine has stopped
	n := src.n
	if n > 3000+5<<10 {
		t.Errorf("read %d bytes ahead of a reader that took 3000; want at most 4 chunks more", n)
	}
	if _, err := ra.Read(make([]byte, 1)); err == nil {
		t.Error("read after Close succeeded")
	}
	ra.Close() // a second Close is harmless
	if src.n != n {
		t.Errorf("source read after Close: %d bytes, then %d", n, src.n)
	}
}

// countReader is an endless stream of zeros that counts what it gave.
type countReader struct{ n int }

func (c *countReader) Read(p []byte) (int, error) {
	clear(p)
	c.n += len(p)
	return len(p), nil
}
