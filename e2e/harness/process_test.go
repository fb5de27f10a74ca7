package harness

import (
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// Goroutines that exit locked to their threads end those threads; a child
// started with startTied must outlive them all.
func TestStartTiedOutlivesExitingThreads(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	exited := make(chan error, 1)
	if err := startTied(cmd, exited); err != nil {
		t.Fatal(err)
	}
	gone := false
	defer func() {
		if !gone {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	for range 200 {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			close(done)
		}()
		<-done
	}
	select {
	case err := <-exited:
		gone = true
		t.Fatalf("the child died when threads of the test binary ended: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("child gone: %v", err)
	}
}
