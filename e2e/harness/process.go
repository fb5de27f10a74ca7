package harness

import (
	"os/exec"
	"runtime"
	"syscall"
)

// startTied starts cmd so that the kernel kills it (SIGKILL) if the test
// binary dies first, and sends cmd.Wait's result to exited once it exits
// (give exited room for it: nothing else may be waiting to receive).
//
// Linux sends that parent-death signal when the thread that started the
// child ends, not the process; and Go ends a thread when a goroutine exits
// locked to it (code under test did, for a while: a decoder on a thread of
// lower priority). So the child is started from a goroutine that keeps its
// thread until the child is gone.
func startTied(cmd *exec.Cmd, exited chan<- error) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	return <-started
}
