package harness

import (
	"bytes"
	"fmt"
	"os/exec"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Compress returns data compressed as kind: "none", "gzip", "zstd", "lz4"
// (with the Go libraries users' tools are built on), "zstd-long27" (the zstd
// CLI with --long=27 reading stdin, so the frame asks for a 128 MiB window)
// or "bzip2" (the bzip2 CLI; Go has no bzip2 writer).
func Compress(data []byte, kind string) ([]byte, error) {
	var buf bytes.Buffer
	switch kind {
	case "none":
		return data, nil
	case "gzip":
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(data); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	case "zstd":
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			return nil, err
		}
		if _, err := zw.Write(data); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	case "lz4":
		zw := lz4.NewWriter(&buf)
		if _, err := zw.Write(data); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	case "zstd-long27":
		return filter(data, "zstd", "-q", "-c", "--long=27", "-3")
	case "bzip2":
		return filter(data, "bzip2", "-c", "-1")
	default:
		return nil, fmt.Errorf("unknown compression %q", kind)
	}
	return buf.Bytes(), nil
}

func filter(data []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(data)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, err, errb.String())
	}
	return out.Bytes(), nil
}

// DockerSaveBytes is WriteDockerSave into memory.
func DockerSaveBytes(imgs ...*Image) []byte {
	var buf bytes.Buffer
	if err := WriteDockerSave(&buf, imgs...); err != nil {
		panic(err) // writing to memory cannot fail
	}
	return buf.Bytes()
}

// OCILayoutBytes is WriteOCILayout into memory.
func OCILayoutBytes(entries ...OCIEntry) ([]byte, []OCIDigests) {
	var buf bytes.Buffer
	ds, err := WriteOCILayout(&buf, entries...)
	if err != nil {
		panic(err) // writing to memory cannot fail
	}
	return buf.Bytes(), ds
}
