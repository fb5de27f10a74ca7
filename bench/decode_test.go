package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// TestDecodeBesideKeepsPace checks that decodeBeside decodes no further
// ahead of a process's writes than it is allowed, and that closing free
// lets it finish.
func TestDecodeBesideKeepsPace(t *testing.T) {
	dir := t.TempDir()
	compressed := filepath.Join(dir, "data.tar.zst")
	var z bytes.Buffer
	enc, err := zstd.NewWriter(&z)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("imagedrop "), 800_000) // 8 MB, 8 decodeChunks
	enc.Write(data)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(compressed, z.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	decode := func(free chan struct{}) chan error {
		done := make(chan error, 1)
		go func() { done <- decodeBeside(compressed, os.Getpid(), 0, free) }()
		return done
	}
	pending := func(done chan error) {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("decodeBeside returned (%v) before this process wrote what it decoded", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	finished := func(done chan error) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("decodeBeside did not finish")
		}
	}

	// Paced by this process's writes: nothing written, 1 chunk decoded.
	done := decode(make(chan struct{}))
	pending(done)
	if err := os.WriteFile(filepath.Join(dir, "out"), data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	pending(done)
	if err := os.WriteFile(filepath.Join(dir, "out"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	finished(done)

	// Freed: no writes needed.
	free := make(chan struct{})
	done = decode(free)
	pending(done)
	close(free)
	finished(done)
}

func TestProcessWritten(t *testing.T) {
	before, err := processWritten(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "out"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	after, err := processWritten(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 1<<20 {
		t.Errorf("processWritten grew by %d after writing 1 MiB", after-before)
	}
}
