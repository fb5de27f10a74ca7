package importer

import (
	"runtime"
	"syscall"
)

// lowerPriority moves the calling goroutine for good to an OS thread of
// its own and lowers that thread's CPU priority to DecodeNice, so that
// decompression takes the CPU that containerd's writes leave over rather
// than a fair share of it: containerd stores the stream one write after
// another on one thread, which decoding at the same priority can keep
// waiting for a core (README, Performance, has what this measured). On a
// busy node the rest of imagedrop, and the node's workloads, come first
// too. The goroutine must not unlock the
// thread: a goroutine that exits locked takes its thread with it, so the
// lowered priority never reaches other goroutines. A refusal (a seccomp
// profile, say) leaves the priority as it was; decoding works either way.
func lowerPriority() {
	runtime.LockOSThread()
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), DecodeNice)
}
