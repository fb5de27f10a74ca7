package importer

import (
	"io"
	"sync"
)

// The hash pipe's buffers: hashPipeDepth of hashPipeChunk bytes each, the
// most the hashes may lag behind the stream.
const (
	hashPipeChunk = 256 << 10
	hashPipeDepth = 4
)

// hashPipe writes what is written to it to w (the hashes of a file) in a
// goroutine of its own, so that hashing runs beside the stream it rides on
// instead of in it: a Write copies the bytes into one of a few buffers and
// returns, and only waits when the hashes lag by all of them. finish waits
// for the hashes to have everything; stop ends the goroutine of a pipe that
// is abandoned. Its Write is not safe for concurrent use, as the stream it
// rides on is one reader.
type hashPipe struct {
	full chan []byte
	free chan []byte
	done chan struct{}
	once sync.Once
}

func newHashPipe(w io.Writer) *hashPipe {
	p := &hashPipe{
		full: make(chan []byte, hashPipeDepth),
		free: make(chan []byte, hashPipeDepth),
		done: make(chan struct{}),
	}
	for range hashPipeDepth {
		p.free <- make([]byte, hashPipeChunk)
	}
	go func() {
		defer close(p.done)
		for b := range p.full {
			_, _ = w.Write(b) // hashes never fail
			p.free <- b[:cap(b)]
		}
	}()
	return p
}

func (p *hashPipe) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		buf := <-p.free
		k := copy(buf, b)
		p.full <- buf[:k]
		b = b[k:]
	}
	return n, nil
}

// finish returns once everything written has been hashed. Nothing may be
// written after it.
func (p *hashPipe) finish() {
	p.once.Do(func() { close(p.full) })
	<-p.done
}
