package importer

import (
	"cmp"
	"io"
	"runtime"
	"sync"
	"syscall"
	"testing"
)

// niceOfThread is the nice value of the calling goroutine's thread. The
// raw getpriority system call answers 20 - nice.
func niceOfThread() (int, error) {
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	return 20 - p, err
}

// priorityReader records the nice value of each thread it is read on.
type priorityReader struct {
	left  int
	mu    sync.Mutex
	nices []int
	err   error
}

func (r *priorityReader) Read(p []byte) (int, error) {
	nice, err := niceOfThread()
	r.mu.Lock()
	r.nices = append(r.nices, nice)
	r.err = cmp.Or(r.err, err)
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
	before, err := niceOfThread()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatalf("getpriority: %v", err)
	}
	if before >= DecodeNice {
		t.Skipf("the test runs at nice %d already, not below %d", before, DecodeNice)
	}
	src := &priorityReader{left: 5 << 20}
	ra := newReadAhead(src, 1<<20, 2)
	if n, err := io.Copy(io.Discard, ra); err != nil || n != 5<<20 {
		t.Fatalf("read %d bytes, %v; want %d", n, err, 5<<20)
	}
	ra.Close()
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.err != nil {
		t.Fatalf("getpriority in the read-ahead goroutine: %v", src.err)
	}
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
			nice, err := niceOfThread()
			if err != nil {
				nice = -100
			}
			done <- nice
		}()
		if got := <-done; got != before {
			t.Fatalf("a goroutine started after Close runs at nice %d (-100: getpriority failed), want %d", got, before)
		}
	}
}
