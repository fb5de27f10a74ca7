package importer

import (
	"io"
	"sync"
)

// The hash pipe's buffers: up to hashPipeDepth of hashPipeChunk bytes
// each, made as the stream needs them, the most the hashes may lag behind
// it. It is more than a write of the stream (a blob's chunk, 4 MiB, read
// straight from the file), so that a write does not wait for the hashes.
const (
	hashPipeChunk = 1 << 20
	hashPipeDepth = 8
)

// hashPipe writes what is written to it to w (the hashes of a file) in a
// goroutine of its own, so that hashing runs beside the stream it rides on
// instead of in it: a Write copies the bytes into buffers of the pipe and
// returns, and only waits when the hashes lag by all of them. finish waits
// for the hashes to have everything. Its Write is not safe for concurrent
// use, as the stream it rides on is one reader.
type hashPipe struct {
	full chan []byte
	free chan []byte
	made int // buffers made so far
	done chan struct{}
	once sync.Once
}

func newHashPipe(w io.Writer) *hashPipe {
	p := &hashPipe{
		full: make(chan []byte, hashPipeDepth),
		free: make(chan []byte, hashPipeDepth),
		done: make(chan struct{}),
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
		buf := p.buffer(len(b))
		k := copy(buf, b)
		p.full <- buf[:k]
		b = b[k:]
	}
	return n, nil
}

// buffer returns a free buffer, made if none is free and fewer than
// hashPipeDepth are: of want bytes up to hashPipeChunk, so that a small
// file does not pay for a whole chunk.
func (p *hashPipe) buffer(want int) []byte {
	var buf []byte
	select {
	case buf = <-p.free:
	default:
		if p.made < hashPipeDepth {
			p.made++
		} else {
			buf = <-p.free
		}
	}
	if len(buf) < min(want, hashPipeChunk) { // none yet, or one too small
		buf = make([]byte, min(want, hashPipeChunk))
	}
	return buf
}

// finish returns once everything written has been hashed. Nothing may be
// written after it.
func (p *hashPipe) finish() {
	p.once.Do(func() { close(p.full) })
	<-p.done
}
