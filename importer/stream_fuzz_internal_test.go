package importer

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// The readers of an archive's bytes and of an image list, fuzzed beside
// the JSON parsers of parse_fuzz_internal_test.go: compression sniffing and
// decompression, the tar walk (streamed and by sections), and the bounds of
// list parsing (FuzzParseList of list_parse_test.go checks what it parses).
// None may panic; what fails on bytes in memory fails as a bad file
// (IsPermanent), never as a node error to retry; and each bound holds.
// `make fuzz` runs each target for longer.

// fuzzTar is a small docker-save-like tar: metadata files, a blob, a
// symlink, for seeds.
func fuzzTar(tb testing.TB) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []struct {
		name, link, data string
	}{
		{name: "l1/layer.tar", data: "layer data"},
		{name: "l2/layer.tar", link: "../l1/layer.tar"},
		{name: "abc.json", data: `{"rootfs":{"type":"layers","diff_ids":[]}}`},
		{name: "manifest.json", data: `[{"Config":"abc.json","RepoTags":["x:1"],"Layers":["l1/layer.tar","l2/layer.tar"]}]`},
		{name: "oci-layout", data: `{"imageLayoutVersion":"1.0.0"}`},
		{name: "blobs/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	} {
		hdr := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.data))}
		if e.link != "" {
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.link
		}
		if err := tw.WriteHeader(hdr); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// fuzzCompressed is data compressed as each compression imagedrop writes
// in code; bzip2 is a fixed stream of "hello\n".
func fuzzCompressed(tb testing.TB, data []byte) [][]byte {
	tb.Helper()
	var gz, lz bytes.Buffer
	gw := gzip.NewWriter(&gz)
	lw := lz4.NewWriter(&lz)
	for _, w := range []io.WriteCloser{gw, lw} {
		if _, err := w.Write(data); err != nil {
			tb.Fatal(err)
		}
		if err := w.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	bz, _ := hex.DecodeString("425a6839314159265359c1c080e2000001410000100244a00030cd00c3462997177245385090c1c080e2")
	return [][]byte{gz.Bytes(), lz.Bytes(), enc.EncodeAll(data, nil), bz}
}

// fuzzExpansion bounds what a fuzzed stream may decompress to: its Max is
// 64 KiB for any input under 1 KiB.
var fuzzExpansion = ExpansionLimit{Ratio: 64, Floor: 64 << 10}

func FuzzDecompress(f *testing.F) {
	tarball := fuzzTar(f)
	f.Add(tarball)
	for _, b := range fuzzCompressed(f, tarball) {
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	// A zstd skippable frame, a bzip2 magic without its level, an empty file.
	f.Add([]byte{0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0})
	f.Add([]byte("BZh"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, detectErr := detect(b[:min(len(b), sniffSize)])
		if detectErr == nil && c == CompressionNone && !isTar(b) {
			t.Fatalf("detect(%q) = none, but it has no tar header", b[:min(len(b), 16)])
		}
		limit := fuzzExpansion
		limit.CompressedSize = int64(len(b))
		var written atomic.Int64
		r, got, closeDecoder, err := decompress(bytes.NewReader(b), DecompressOptions{
			ZstdMaxWindow: 1 << 20, Limit: limit, Written: &written,
		})
		// A stream detect refuses is refused; one it names may still fail
		// to open (a gzip header cut short).
		if (detectErr != nil && err == nil) || (err == nil && got != c) {
			t.Fatalf("decompress = %s, %v; detect = %s, %v", got, err, c, detectErr)
		}
		if err != nil {
			if !IsPermanent(readFailure(err)) {
				t.Fatalf("decompress error %v is not permanent", err)
			}
			return
		}
		defer closeDecoder()
		n, err := io.Copy(io.Discard, r)
		if err != nil && !IsPermanent(readFailure(err)) {
			t.Fatalf("read error %v is not permanent", err)
		}
		// The limit is checked after each read, of one chunk at most.
		if c != CompressionNone && n > limit.Max()+readAheadChunk {
			t.Fatalf("%s stream of %d bytes decompressed to %d, limit %d", c, len(b), n, limit.Max())
		}
		if written.Load() < n {
			t.Fatalf("counted %d bytes written, read %d", written.Load(), n)
		}
	})
}

func FuzzTarWalk(f *testing.F) {
	tarball := fuzzTar(f)
	f.Add(tarball)
	f.Add(tarball[:len(tarball)/2])
	f.Add(tarball[:1024])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Room for the seed's entries and JSON, no more.
		const maxJSON, maxEntries = 512, 8
		stream := newContents(maxJSON, maxEntries)
		tr := tar.NewReader(bytes.NewReader(b))
		var names []string
		streamErr := stream.walk(tr, func(hdr *tar.Header, name string) error {
			if name == "manifest.json" || name == "index.json" || name == "oci-layout" {
				t.Errorf("metadata file %q walked as a blob", name)
			}
			names = append(names, name)
			_, err := io.Copy(io.Discard, tr)
			return readFailure(err)
		})
		if streamErr != nil && !IsPermanent(streamErr) {
			t.Fatalf("walk error %v is not permanent", streamErr)
		}
		if stream.entries > maxEntries+1 || len(stream.symlinks) > maxEntries {
			t.Fatalf("walk kept %d entries and %d symlinks, limit %d", stream.entries, len(stream.symlinks), maxEntries)
		}

		at := newContents(maxJSON, maxEntries)
		secs, err := at.sections(io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b))))
		if errors.Is(err, errSparse) {
			return
		}
		if err != nil && !IsPermanent(err) {
			t.Fatalf("sections error %v is not permanent", err)
		}
		if err != nil || streamErr != nil {
			return
		}
		for _, s := range secs {
			if s.off < 0 || s.size < 0 || s.off+s.size > int64(len(b)) {
				t.Fatalf("section %q at %d of %d bytes lies outside the %d-byte archive", s.entry, s.off, s.size, len(b))
			}
			if !slices.Contains(names, s.name) {
				t.Fatalf("section %q is no blob of the streamed walk %q", s.name, names)
			}
		}
		_ = knownLayerDigests(bytes.NewReader(b), at, secs)
	})
}

func FuzzParseListLimits(f *testing.F) {
	for _, seed := range []string{
		"busybox\n# comment\n\ndocker.io/library/alpine:3.19 # pinned\r\n",
		"\xef\xbb\xbfnginx@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n",
		"UPPER\nbad ref\n:tag\n@\nx y\n", "a\x00b\n", "\xff\n", strings.Repeat("a", MaxListLine+1),
		"registry.local:5000/team/app:v1.2.3@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		const maxRefs = 16
		list, err := parseList(bytes.NewReader(b), maxRefs)
		if err != nil {
			if !IsPermanent(err) {
				t.Fatalf("error %v is not permanent", err)
			}
			// The errors of a whole list quote nothing of the file.
			if len(err.Error()) > 200 {
				t.Fatalf("error of %d bytes: %.300s", len(err.Error()), err)
			}
			return
		}
		if len(list.Entries)+len(list.Invalid) > maxRefs {
			t.Fatalf("%d entries and %d invalid lines, limit %d", len(list.Entries), len(list.Invalid), maxRefs)
		}
		for _, l := range list.Invalid {
			// An excerpt of at most excerptLength bytes, each escaped in at
			// most 10 bytes (\U0010ffff), and the reason.
			if len(l.Error()) > 400+10*excerptLength {
				t.Errorf("line error of %d bytes: %.500s", len(l.Error()), l.Error())
			}
		}
	})
}
