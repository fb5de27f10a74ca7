package importer

import (
	"io"
	"runtime"
	"sync"
	"syscall"
	"testing"
)

// niceOfThread is the nice value of the calling goroutine's thread. The
// raw getpriority system call answers 20 - nice.
func niceOfThread(t *testing.T) int {
	t.Helper()
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	if err != nil {
		t.Fatalf("getpriority: %v", err)
	}
	return 20 - p
}

// priorityReader records the nice value of each thread it is read on.
type priorityReader struct {
	t     *testing.T
	left  int
	mu    sync.Mutex
	nices []int
}

func (r *priorityReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	r.nices = append(r.nices, niceOfThread(r.t))
	r.mu.Unlock()
	if r.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.left)
	r.left -= n
	return n, nil
}

func TestReadAheadDecodesAtLowerPriority(t *testing.T) {
	runtime.LockOSThread()
	before := niceOfThread(t)
	runtime.UnlockOSThread()
	if before >= DecodeNice {
		t.Skipf("the test runs at nice %d already, not below %d", before, DecodeNice)
	}
	src := &priorityReader{t: t, left: 5 << 20}
	ra := newReadAhead(src, 1<<20, 2)
	if n, err := io.Copy(io.Discard, ra); err != nil || n != 5<<20 {
		t.Fatalf("read %d bytes, %v; want %d", n, err, 5<<20)
	}
	ra.Close()
	src.mu.Lock()
	defer src.mu.Unlock()
	for i, nice := range src.nices {
		if nice != DecodeNice {
			t.Errorf("read %d of the source ran at nice %d, want %d", i, nice, DecodeNice)
		}
	}
	// The lowered thread went with its goroutine: no other goroutine runs
	// on it.
	for range 20 {
		done := make(chan int)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			done <- niceOfThread(t)
		}()
		if got := <-done; got != before {
			t.Fatalf("a goroutine started after Close runs at nice %d, want %d", got, before)
		}
	}
}
