package importer

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Kind is what a file in the images directory holds.
type Kind string

// The kinds of file imagedrop handles.
const (
	KindArchive Kind = "archive"
	KindList    Kind = "list"
)

// archiveSuffixes are the archive names imagedrop picks up. The suffix only
// selects the file; the compression is always sniffed from its content.
var archiveSuffixes = []string{".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar.lz4", ".tar.bz2", ".tbz"}

// KindOf tells what a file holds from its name, matched case-insensitively.
// It returns false for names imagedrop does not handle.
func KindOf(path string) (Kind, bool) {
	name := strings.ToLower(filepath.Base(path))
	if strings.HasSuffix(name, ".txt") {
		return KindList, true
	}
	for _, s := range archiveSuffixes {
		if strings.HasSuffix(name, s) {
			return KindArchive, true
		}
	}
	return "", false
}

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

// DecompressOptions bound the memory a decompressor may use.
type DecompressOptions struct {
	// ZstdMaxWindow is the largest zstd window accepted, in bytes. Frames made
	// with `zstd --long=27` need 128 MiB.
	ZstdMaxWindow uint64
}

// decompress returns the tar stream inside r and the compression it found.
// The returned closer releases decoder resources; it does not close r.
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
	nop := func() {}
	switch c {
	case CompressionGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, c, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, c, func() { _ = zr.Close() }, nil
	case CompressionZstd:
		zr, err := zstd.NewReader(br,
			zstd.WithDecoderMaxWindow(opts.ZstdMaxWindow),
			zstd.WithDecoderLowmem(false))
		if err != nil {
			return nil, c, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, c, zr.Close, nil
	case CompressionLZ4:
		return lz4.NewReader(br), c, nop, nil
	case CompressionBzip2:
		return bzip2.NewReader(br), c, nop, nil
	}
	return br, c, nop, nil
}
