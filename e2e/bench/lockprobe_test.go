package main

import (
	"os"
	"testing"
	"time"
)

// A goroutine dump in the shape containerd's debug socket serves: one
// goroutine inside a write transaction, two queued for it, one reading.
const dumpWithWriters = `goroutine 10 [syscall]:
syscall.Syscall(0x4b, 0x9, 0x0, 0x0)
go.etcd.io/bbolt.fdatasync(...)
go.etcd.io/bbolt.(*Tx).Commit(0xc000)
go.etcd.io/bbolt.(*DB).Update(0xc000, 0xc001)
github.com/containerd/containerd/v2/core/metadata.(*DB).Update(0xc002, 0xc003)

goroutine 11 [sync.Mutex.Lock]:
internal/sync.runtime_SemacquireMutex(0x5?, 0x6f?, 0x0?)
sync.(*Mutex).Lock(...)
go.etcd.io/bbolt.(*DB).beginRWTx(0xc000)
go.etcd.io/bbolt.(*DB).Begin(0xc000, 0x1)
github.com/containerd/containerd/v2/core/metadata.(*DB).Update(0xc002, 0xc004)

goroutine 12 [semacquire]:
sync.runtime_SemacquireMutex(0x5?, 0x0?, 0x0?)
go.etcd.io/bbolt.(*DB).beginRWTx(0xc000)
github.com/containerd/containerd/metadata.(*DB).Update(0xc002, 0xc005)

goroutine 13 [runnable]:
go.etcd.io/bbolt.(*DB).View(0xc000, 0xc006)
github.com/containerd/containerd/v2/core/metadata.(*DB).View(0xc002, 0xc006)
`

func TestScanLock(t *testing.T) {
	for _, tt := range []struct {
		name    string
		dump    string
		waiting int
		held    bool
	}{
		{"writer and two queued (2.x and 1.6 stacks)", dumpWithWriters, 2, true},
		{"no metadata writes", "goroutine 1 [select]:\nmain.main()\n", 0, false},
	} {
		waiting, held := scanLock(tt.dump)
		if waiting != tt.waiting || held != tt.held {
			t.Errorf("%s: scanLock = %d waiting, held %t; want %d, %t", tt.name, waiting, held, tt.waiting, tt.held)
		}
	}
}

func TestProcessCPUCountsOwnWork(t *testing.T) {
	before, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel has charged at least two more ticks to us.
	deadline := time.Now().Add(5 * time.Second)
	after := before
	for after < before+2*time.Second/userHZ && time.Now().Before(deadline) {
		for i := 0; i < 1e6; i++ {
			_ = i * i
		}
		if after, err = processCPU(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if after < before+2*time.Second/userHZ {
		t.Fatalf("processCPU went from %s to %s after spinning for 5 s", before, after)
	}
	if u, err := processCPU(0); err != nil || u != 0 {
		t.Errorf("processCPU(0) = %s, %v; want 0, nil", u, err)
	}
}
