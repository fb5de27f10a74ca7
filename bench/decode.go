package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// openDecoder opens the gzip or zstd file path with the library and decoder
// settings imagedrop decodes with (one zstd decoder goroutine, its checksum
// verified). The returned func closes the decoder and the file.
func openDecoder(path string) (io.Reader, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	switch {
	case strings.HasSuffix(path, ".zst"):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(false), zstd.WithDecoderMaxWindow(1<<29))
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		return zr, func() { zr.Close(); f.Close() }, nil
	case strings.HasSuffix(path, ".gz"):
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		return zr, func() { zr.Close(); f.Close() }, nil
	}
	f.Close()
	return nil, nil, fmt.Errorf("%s: neither .gz nor .zst", path)
}

// decodeChunk is the size of the reads from a decoder here, as imagedrop's
// read-ahead reads its decoder.
const decodeChunk = 1 << 20

// decodeFile decompresses path (see openDecoder) in the bench process to
// io.Discard: the CPU time a compressed import cannot avoid, on one core.
func decodeFile(path string) (sample, error) {
	start := time.Now()
	r, closeDecoder, err := openDecoder(path)
	if err != nil {
		return sample{}, err
	}
	defer closeDecoder()
	// Only Read: io.Copy would take the decoder's WriteTo, which imagedrop's
	// read-ahead does not use.
	if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, make([]byte, decodeChunk)); err != nil {
		return sample{}, fmt.Errorf("decode %s: %w", path, err)
	}
	return sample{wall: time.Since(start)}, nil
}

// decodeBeside decompresses path (see openDecoder) to io.Discard at the pace
// of containerd's writes: it decodes at most ahead bytes more than the
// process pid has written since it started, as imagedrop's read-ahead runs
// ahead of the writes it feeds. Once free is closed it decodes the rest
// without waiting.
func decodeBeside(path string, pid int, ahead int64, free <-chan struct{}) error {
	r, closeDecoder, err := openDecoder(path)
	if err != nil {
		return err
	}
	defer closeDecoder()
	start, err := processWritten(pid)
	if err != nil {
		return err
	}
	buf := make([]byte, decodeChunk)
	var decoded int64
	freed := false
	for {
		for !freed {
			written, err := processWritten(pid)
			if err != nil {
				return err
			}
			if decoded <= written-start+ahead {
				break
			}
			select {
			case <-free:
				freed = true
			case <-time.After(2 * time.Millisecond):
			}
		}
		n, err := io.ReadFull(r, buf)
		decoded += int64(n)
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil
		case err != nil:
			return fmt.Errorf("decode %s: %w", path, err)
		}
	}
}

// processWritten is the bytes the process pid has written through system
// calls so far (wchar of /proc/PID/io): for containerd importing a blob,
// about the blob's bytes received so far.
func processWritten(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "wchar:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/io: no wchar", pid)
}
