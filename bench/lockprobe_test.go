package main

import (
	"maps"
	"math"
	"os"
	"slices"
	"testing"
	"time"
)

// A goroutine profile in the shape containerd's debug socket serves
// (debug=1, frames shortened): a CRI pull committing a blob holds the
// write lock in 2.x, an API image update holds it in a 1.6-style stack;
// four goroutines wait (two API content updates for bbolt's lock, one
// 1.6-style writer, one image update for the garbage collector's); one
// goroutine only reads.
const profileWithWriters = `goroutine profile: total 9
1 @ 0x1 0x2
#	0x4b4618	syscall.Syscall+0x38	/go/src/syscall/syscall_linux.go:96
#	0xced000	go.etcd.io/bbolt.fdatasync+0x10	/bbolt/bolt_linux.go:9
#	0xced001	go.etcd.io/bbolt.(*Tx).Commit+0x10	/bbolt/tx.go:1
#	0xcedb32	go.etcd.io/bbolt.(*DB).Update+0x32	/bbolt/db.go:906
#	0xd1d895	github.com/containerd/containerd/v2/core/metadata.(*DB).Update+0x95	/containerd/core/metadata/db.go:275
#	0xd0d4dc	github.com/containerd/containerd/v2/core/metadata.update+0xfc	/containerd/core/metadata/bolt.go:50
#	0xd14584	github.com/containerd/containerd/v2/core/metadata.(*namespacedWriter).Commit+0x264	/containerd/core/metadata/content.go:604
#	0xd20001	github.com/containerd/containerd/v2/core/content.Copy+0x1	/containerd/core/content/helpers.go:1
#	0xd20002	github.com/containerd/containerd/v2/core/remotes.Fetch+0x1	/containerd/core/remotes/handlers.go:1
#	0x13c9c67	github.com/containerd/containerd/v2/internal/cri/server/images.(*CRIImageService).PullImage+0x9e7	/containerd/internal/cri/server/images/image_pull.go:190
#	0x11cf3aa	k8s.io/cri-api/pkg/apis/runtime/v1._ImageService_PullImage_Handler.func1+0xca	/cri-api/api_grpc.pb.go:2126

2 @ 0x3 0x4
#	0x48fa84	internal/sync.runtime_SemacquireMutex+0x24	/go/src/runtime/sema.go:95
#	0x49f3bc	internal/sync.(*Mutex).lockSlow+0x15c	/go/src/internal/sync/mutex.go:149
#	0xced6e0	sync.(*Mutex).Lock+0x40	/go/src/sync/mutex.go:46
#	0xced6df	go.etcd.io/bbolt.(*DB).beginRWTx+0x3f	/bbolt/db.go:847
#	0xced208	go.etcd.io/bbolt.(*DB).Begin+0x168	/bbolt/db.go:780
#	0xcedb32	go.etcd.io/bbolt.(*DB).Update+0x32	/bbolt/db.go:906
#	0xd1d895	github.com/containerd/containerd/v2/core/metadata.(*DB).Update+0x95	/containerd/core/metadata/db.go:275
#	0xd0d4dc	github.com/containerd/containerd/v2/core/metadata.update+0xfc	/containerd/core/metadata/bolt.go:50
#	0xd14584	github.com/containerd/containerd/v2/core/metadata.(*contentStore).Update+0x264	/containerd/core/metadata/content.go:106
#	0xa8a28a	github.com/containerd/containerd/api/services/content/v1._Content_Update_Handler.func1+0xca	/api/content_grpc.pb.go:375

1 @ 0x5
#	0x48fa84	sync.runtime_SemacquireMutex+0x24	/go/src/runtime/sema.go:71
#	0xced6df	go.etcd.io/bbolt.(*DB).beginRWTx+0x3f	/bbolt/db.go:600
#	0xd1d895	github.com/containerd/containerd/metadata.(*DB).Update+0x95	/containerd/metadata/db.go:250

1 @ 0x6
#	0x48fa85	sync.runtime_SemacquireRWMutexR+0x24	/go/src/runtime/sema.go:82
#	0x49f3bd	sync.(*RWMutex).RLock+0x5c	/go/src/sync/rwmutex.go:71
#	0xd1d895	github.com/containerd/containerd/v2/core/metadata.(*DB).Update+0x95	/containerd/core/metadata/db.go:275
#	0xd0d4dc	github.com/containerd/containerd/v2/core/metadata.update+0xfc	/containerd/core/metadata/bolt.go:50
#	0xd14585	github.com/containerd/containerd/v2/core/metadata.(*imageStore).Update+0x64	/containerd/core/metadata/images.go:150
#	0xa8a28b	github.com/containerd/containerd/api/services/images/v1._Images_Update_Handler.func1+0xca	/api/images_grpc.pb.go:300

1 @ 0x7
#	0x4b4618	syscall.Syscall+0x38	/go/src/syscall/syscall_linux.go:96
#	0xcedb32	go.etcd.io/bbolt.(*DB).Update+0x32	/bbolt/db.go:700
#	0xd1d895	github.com/containerd/containerd/metadata.(*DB).Update+0x95	/containerd/metadata/db.go:250
#	0xd0d4dc	github.com/containerd/containerd/metadata.update+0xfc	/containerd/metadata/bolt.go:40
#	0xd14585	github.com/containerd/containerd/metadata.(*imageStore).Update+0x64	/containerd/metadata/images.go:150
#	0xa8a28b	github.com/containerd/containerd/api/services/images/v1._Images_Update_Handler.func1+0xca	/api/images_grpc.pb.go:300

3 @ 0x8
#	0xcedb00	go.etcd.io/bbolt.(*DB).View+0x32	/bbolt/db.go:920
#	0xd1d800	github.com/containerd/containerd/v2/core/metadata.(*DB).View+0x95	/containerd/core/metadata/db.go:260
`

// The garbage collector marking (holding containerd's RWMutex), and an
// image update waiting for it; then the collector waiting for a writer.
const (
	gcHolds = `1 @ 0x1
#	0xcedb00	go.etcd.io/bbolt.(*DB).View+0x32	/bbolt/db.go:920
#	0xd1d810	github.com/containerd/containerd/v2/core/metadata.(*DB).getMarked+0x95	/containerd/core/metadata/db.go:400
#	0xd1d820	github.com/containerd/containerd/v2/core/metadata.(*DB).GarbageCollect+0x95	/containerd/core/metadata/db.go:330

1 @ 0x2
#	0x48fa85	sync.runtime_SemacquireRWMutexR+0x24	/go/src/runtime/sema.go:82
#	0x49f3bd	sync.(*RWMutex).RLock+0x5c	/go/src/sync/rwmutex.go:71
#	0xd1d895	github.com/containerd/containerd/v2/core/metadata.(*DB).Update+0x95	/containerd/core/metadata/db.go:275
#	0xd14585	github.com/containerd/containerd/v2/core/metadata.(*imageStore).Update+0x64	/containerd/core/metadata/images.go:150
`
	gcWaits = `1 @ 0x1
#	0x48fa86	sync.runtime_SemacquireRWMutex+0x24	/go/src/runtime/sema.go:87
#	0x49f3be	sync.(*RWMutex).Lock+0x5c	/go/src/sync/rwmutex.go:150
#	0xd1d820	github.com/containerd/containerd/v2/core/metadata.(*DB).GarbageCollect+0x95	/containerd/core/metadata/db.go:330

1 @ 0x2
#	0x4b4618	syscall.Syscall+0x38	/go/src/syscall/syscall_linux.go:96
#	0xcedb32	go.etcd.io/bbolt.(*DB).Update+0x32	/bbolt/db.go:906
#	0xd1d895	github.com/containerd/containerd/v2/core/metadata.(*DB).Update+0x95	/containerd/core/metadata/db.go:275
#	0xd14585	github.com/containerd/containerd/v2/core/metadata.(*imageStore).Update+0x64	/containerd/core/metadata/images.go:150
`
)

func TestScanLock(t *testing.T) {
	for _, tt := range []struct {
		name    string
		profile string
		waiting int
		holders []string
	}{
		{"holders and waiters (2.x and 1.6 stacks)", profileWithWriters, 4, []string{"namespacedWriter.Commit", "imageStore.Update"}},
		{"garbage collector holds, a writer waits", gcHolds, 1, []string{"GarbageCollect"}},
		{"garbage collector waits for a writer", gcWaits, 1, []string{"imageStore.Update"}},
		{"no metadata writes", "goroutine profile: total 1\n1 @ 0x1\n#\t0x1\tmain.main+0x1\t/main.go:1\n", 0, nil},
	} {
		waiting, holders := scanLock(tt.profile)
		if waiting != tt.waiting || !slices.Equal(holders, tt.holders) {
			t.Errorf("%s: scanLock = %d waiting, holders %q; want %d, %q", tt.name, waiting, holders, tt.waiting, tt.holders)
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

func TestLockProbeSums(t *testing.T) {
	p := lockProbe{samples: 40, held: 20, queued: 10, holders: map[string]int{"a": 20}}.
		add(lockProbe{samples: 60, held: 30, queued: 50, holders: map[string]int{"a": 10, "b": 20}})
	want := lockProbe{samples: 100, held: 50, queued: 60, holders: map[string]int{"a": 30, "b": 20}}
	if p.samples != want.samples || p.held != want.held || p.queued != want.queued || !maps.Equal(p.holders, want.holders) {
		t.Fatalf("add = %+v, want %+v", p, want)
	}
	if got := p.heldShare(); got != 0.5 {
		t.Errorf("heldShare = %v, want 0.5", got)
	}
	// 1.96 × √(0.5 × 0.5 / 100) = 0.098
	if got := p.heldMargin(); math.Abs(got-0.098) > 1e-9 {
		t.Errorf("heldMargin = %v, want 0.098", got)
	}
	if got := p.meanQueued(); got != 0.6 {
		t.Errorf("meanQueued = %v, want 0.6", got)
	}
	if (lockProbe{}).heldMargin() != 0 {
		t.Error("heldMargin of no dumps is not 0")
	}
}
