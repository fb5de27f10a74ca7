package importer

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"math"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Compression is the compression of an archive, detected from its first bytes.
type Compression string

// The compressions imagedrop reads.
const (
	CompressionNone  Compression = "none"
	CompressionGzip  Compression = "gzip"
	CompressionZstd  Compression = "zstd"
	CompressionLZ4   Compression = "lz4"
	CompressionBzip2 Compression = "bzip2"
)

// ErrNotArchive is returned for content that is not a (compressed) tar archive.
var ErrNotArchive = errors.New("not a tar archive (nor gzip, zstd, lz4 or bzip2 compressed tar)")

// ErrEmpty is returned for an empty file.
var ErrEmpty = errors.New("file is empty")

var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicLZ4   = []byte{0x04, 0x22, 0x4d, 0x18}
	magicBzip2 = []byte("BZh")
)

// sniffSize covers the tar header's "ustar" magic at offset 257.
const sniffSize = 512

// detect names the compression of a stream from its first bytes.
func detect(head []byte) (Compression, error) {
	switch {
	case len(head) == 0:
		return "", ErrEmpty
	case bytes.HasPrefix(head, magicGzip):
		return CompressionGzip, nil
	case bytes.HasPrefix(head, magicZstd), isZstdSkippable(head):
		return CompressionZstd, nil
	case bytes.HasPrefix(head, magicLZ4):
		return CompressionLZ4, nil
	case bytes.HasPrefix(head, magicBzip2) && len(head) > 3 && head[3] >= '1' && head[3] <= '9':
		return CompressionBzip2, nil
	case isTar(head):
		return CompressionNone, nil
	}
	return "", ErrNotArchive
}

// isZstdSkippable reports a zstd skippable frame (0x184D2A5?), which pzstd
// and some tools put first.
func isZstdSkippable(head []byte) bool {
	return len(head) >= 4 && head[0]&0xf0 == 0x50 && head[1] == 0x2a && head[2] == 0x4d && head[3] == 0x18
}

// isTar reports a POSIX (ustar) or GNU tar header.
func isTar(head []byte) bool {
	return len(head) >= 262 && bytes.Equal(head[257:262], []byte("ustar"))
}

// DecompressOptions bound the memory a decompressor may use and the bytes
// it may produce.
type DecompressOptions struct {
	// ZstdMaxWindow is the largest zstd window accepted, in bytes. Frames made
	// with `zstd --long=27` need 128 MiB.
	ZstdMaxWindow uint64
	// Limit describes the most bytes a compressed stream may decompress to;
	// its Max of 0 means no limit.
	Limit ExpansionLimit
	// Written, if set, counts the decompressed bytes as they are produced.
	Written *atomic.Int64
}

// ExpansionLimit is the limit on what one compressed file may decompress to:
// max(Ratio × its compressed size, Floor), as Max gives it.
type ExpansionLimit struct {
	Ratio          uint64
	Floor          uint64
	CompressedSize int64
}

// Max is the most bytes the file may decompress to; 0 means no limit.
func (l ExpansionLimit) Max() int64 {
	if l.Ratio == 0 {
		return 0
	}
	size := uint64(max(l.CompressedSize, 0))
	if size > math.MaxInt64/l.Ratio {
		return math.MaxInt64
	}
	return int64(min(max(l.Ratio*size, l.Floor), math.MaxInt64))
}

// limitedReader fails with a permanent error once r has produced more than
// the limit's Max bytes, and counts what it produced in written.
type limitedReader struct {
	r       io.Reader
	limit   ExpansionLimit
	max     int64
	n       int64
	written *atomic.Int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.max > 0 && l.n > l.max {
		return 0, l.err()
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.written != nil {
		l.written.Add(int64(n))
	}
	if l.max > 0 && l.n > l.max {
		return n, l.err()
	}
	return n, err
}

func (l *limitedReader) err() error {
	return invalid(fmt.Errorf("%w: more than %d bytes from %d compressed (--max-expansion %d times the compressed size, at least --max-expansion-floor %d bytes)",
		ErrExpansion, l.max, l.limit.CompressedSize, l.limit.Ratio, l.limit.Floor))
}

// ErrExpansion is returned for a compressed file that decompresses to more
// than its ExpansionLimit allows (a decompression bomb).
var ErrExpansion = errors.New("archive decompresses to more than the limit")

// decompress returns the tar stream inside r and the compression it found.
// A compressed stream is decompressed in a goroutine of its own, ahead of
// the reader (see readAhead), so that decompression overlaps with the
// writes to containerd. The returned closer stops that goroutine and
// releases decoder resources; it does not close r.
func decompress(r io.Reader, opts DecompressOptions) (io.Reader, Compression, func(), error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head, err := br.Peek(sniffSize)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, "", nil, fmt.Errorf("read header: %w", err)
	}
	c, err := detect(head)
	if err != nil {
		return nil, "", nil, err
	}
	var (
		dr   io.Reader
		done = func() {}
	)
	switch c {
	case CompressionNone:
		if opts.Written != nil {
			return &limitedReader{r: br, written: opts.Written}, c, done, nil
		}
		return br, c, done, nil
	case CompressionGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, c, nil, fmt.Errorf("gzip: %w", err)
		}
		dr, done = zr, func() { _ = zr.Close() }
	case CompressionZstd:
		// One decoder, decoding in the read-ahead goroutine: the decoder's
		// own async pipeline only adds goroutines and copies (a third more
		// CPU for the same stream, measured) to an overlap readAhead gives.
		zr, err := zstd.NewReader(br,
			zstd.WithDecoderMaxWindow(opts.ZstdMaxWindow),
			zstd.WithDecoderLowmem(false),
			zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, c, nil, fmt.Errorf("zstd: %w", err)
		}
		dr, done = zr, zr.Close
	case CompressionLZ4:
		dr = lz4.NewReader(br)
	case CompressionBzip2:
		dr = bzip2.NewReader(br)
	}
	dr = &limitedReader{r: dr, limit: opts.Limit, max: opts.Limit.Max(), written: opts.Written}
	ra := newReadAhead(dr, readAheadChunk, readAheadDepth)
	return ra, c, func() { ra.Close(); done() }, nil
}

// Read-ahead of decompressed data: up to readAheadDepth chunks of
// readAheadChunk bytes wait for the reader, a few MiB at most.
const (
	readAheadChunk = 1 << 20
	readAheadDepth = 6
)

// readAhead reads r in its own goroutine, up to depth chunks ahead of its
// reader. It returns the same bytes and then the same error as r.
type readAhead struct {
	chunks   chan []byte // read from r, in order
	free     chan []byte // handed back by the reader, for reuse
	done     chan struct{}
	finished chan struct{}
	buf, cur []byte // the chunk being read, and its unread rest
	err      error  // r's error, or io.ErrClosedPipe; set before chunks is closed
	closed   bool
}

func newReadAhead(r io.Reader, size, depth int) *readAhead {
	ra := &readAhead{
		chunks:   make(chan []byte, depth),
		free:     make(chan []byte, depth+2),
		done:     make(chan struct{}),
		finished: make(chan struct{}),
	}
	go ra.fill(r, size, depth+2)
	return ra
}

// fill reads r into chunks until r fails or Close is called. At most total
// chunks exist: depth in the channel, one being filled, one being read.
func (ra *readAhead) fill(r io.Reader, size, total int) {
	defer func() {
		if ra.err == nil { // stopped by Close
			ra.err = io.ErrClosedPipe
		}
		close(ra.chunks)
		close(ra.finished)
	}()
	allocated := 0
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.done:
			return
		default:
			if allocated < total {
				buf, allocated = make([]byte, size), allocated+1
				break
			}
			select {
			case buf = <-ra.free:
			case <-ra.done:
				return
			}
		}
		n, err := readFull(r, buf)
		if n > 0 {
			select {
			case ra.chunks <- buf[:n]:
			case <-ra.done:
				return
			}
		}
		if err != nil {
			ra.err = err
			return
		}
	}
}

// readFull reads into buf until it is full or r fails, and returns r's error
// as it was (io.ReadFull would turn an early io.EOF into another error).
func readFull(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (ra *readAhead) Read(p []byte) (int, error) {
	if ra.closed {
		return 0, io.ErrClosedPipe
	}
	for len(ra.cur) == 0 {
		if ra.buf != nil {
			ra.free <- ra.buf[:cap(ra.buf)]
			ra.buf = nil
		}
		b, ok := <-ra.chunks
		if !ok {
			return 0, ra.err
		}
		ra.buf, ra.cur = b, b
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the goroutine and waits for it, so that r may be closed after.
func (ra *readAhead) Close() {
	if !ra.closed {
		ra.closed = true
		close(ra.done)
	}
	<-ra.finished
}
