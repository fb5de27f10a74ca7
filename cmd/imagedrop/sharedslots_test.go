package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/watcher"
)

// leaseTestEnv is a real kube-apiserver, with RBAC, and the namespace of
// the slots in it.
type leaseTestEnv struct {
	cs *kubernetes.Clientset // cluster admin
	// sa is imagedrop's ServiceAccount, allowed only what
	// deploy/components/shared-images's Role grants.
	sa *kubernetes.Clientset
	ns string
}

func newLeaseTestEnv(t *testing.T) leaseTestEnv {
	t.Helper()
	k := harness.RequireAPIServer(t)
	rc, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns := "imagedrop" // the component's
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "imagedrop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var role rbacv1.Role
	var binding rbacv1.RoleBinding
	readYAML(t, "../../deploy/components/shared-images/role.yaml", &role)
	readYAML(t, "../../deploy/components/shared-images/rolebinding.yaml", &binding)
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	src := rest.CopyConfig(rc)
	src.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:imagedrop:imagedrop"}
	sa, err := kubernetes.NewForConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	return leaseTestEnv{cs: cs, sa: sa, ns: ns}
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// slots is node's semaphore of n slots, as imagedrop's ServiceAccount.
func (e leaseTestEnv) slots(node string, n int) *leaseSlots {
	return newLeaseSlots(e.sa.CoordinationV1().Leases(e.ns), node, n, 3*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// holder returns who holds slot 0.
func (e leaseTestEnv) holder(t *testing.T) string {
	t.Helper()
	l, err := e.cs.CoordinationV1().Leases(e.ns).Get(context.Background(), slotPrefix+"0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// TestLeaseSlots runs the semaphore against a real kube-apiserver, as
// imagedrop's ServiceAccount with only the Role of
// deploy/components/shared-images (the chart's is the same): nodes
// that race for slots never hold more than there are, a released slot goes
// to a waiting node, a slot whose holder stopped renewing is taken over
// after its lease duration, and a slot left by an earlier run of the same
// node is taken back at once.
func TestLeaseSlots(t *testing.T) {
	e := newLeaseTestEnv(t)
	ctx := context.Background()

	t.Run("never more holders than slots", func(t *testing.T) {
		const n = 2
		var holding, most atomic.Int32
		var wg sync.WaitGroup
		for _, node := range []string{"n1", "n2", "n3", "n4"} {
			s := e.slots(node, n)
			wg.Go(func() {
				for range 3 {
					_, release, err := acquire(ctx, s, func(error) {})
					if err != nil {
						t.Error(err)
						return
					}
					h := holding.Add(1)
					for m := most.Load(); h > m && !most.CompareAndSwap(m, h); m = most.Load() {
					}
					time.Sleep(50 * time.Millisecond) // a short import, so that holds overlap
					holding.Add(-1)
					release()
				}
			})
		}
		wg.Wait()
		if got := most.Load(); got > n {
			t.Errorf("at most %d nodes held a slot at once; want at most %d", got, n)
		}
	})

	a, b := e.slots("a", 1), e.slots("b", 1)
	_, releaseA, err := acquire(ctx, a, func(error) { t.Error("a waited for a free slot") })
	if err != nil {
		t.Fatal(err)
	}
	if got := e.holder(t); got != "a" {
		t.Fatalf("slot 0 held by %q, want a", got)
	}
	// b's context ending without a release is b dying: it stops renewing.
	bLife, killB := context.WithCancel(ctx)
	defer killB()
	bHeld := make(chan error, 1)
	var bWaited atomic.Bool
	go func() {
		_, _, err := acquire(bLife, b, func(error) { bWaited.Store(true) })
		bHeld <- err
	}()
	eventually(t, "b waits", bWaited.Load)
	select {
	case <-bHeld:
		t.Fatal("b got the only slot while a held it")
	default:
	}
	releaseA()
	if err := <-bHeld; err != nil {
		t.Fatal(err)
	}
	if got := e.holder(t); got != "b" {
		t.Fatalf("after a released, slot 0 held by %q, want b", got)
	}

	killB()
	c := e.slots("c", 1)
	cLife, killC := context.WithCancel(ctx)
	defer killC()
	var cWaited atomic.Bool
	if _, _, err := acquire(cLife, c, func(error) { cWaited.Store(true) }); err != nil {
		t.Fatal(err)
	}
	if got := e.holder(t); got != "c" || !cWaited.Load() {
		t.Fatalf("slot 0 held by %q (c waited: %v); want c, after waiting for b's lease to expire", got, cWaited.Load())
	}

	killC()
	c2 := e.slots("c", 1) // c's next run
	_, release, err := acquire(ctx, c2, func(error) { t.Error("c's next run waited for the slot c left") })
	if err != nil {
		t.Fatal(err)
	}
	release()
	if got := e.holder(t); got != "" {
		t.Errorf("after release, slot 0 held by %q, want nobody", got)
	}

	t.Run("gate", func(t *testing.T) { testSharedGate(t, e) })
}

// testSharedGate checks that a job of a shared file finds the only slot held
// by another node and returns the watcher's NotYet at once, without running,
// is shown waiting while the watcher says so, and runs holding the slot
// once the other node released it; files of other directories never wait.
func testSharedGate(t *testing.T, e leaseTestEnv) {
	ctx := context.Background()
	_, releaseOther, err := acquire(ctx, e.slots("other", 1), func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	g, err := newSharedGate(e.slots("me", 1), []string{root})
	if err != nil {
		t.Fatal(err)
	}
	f := watcher.File{Root: root, Path: filepath.Join(root, "sub", "a.tar"), Progress: func() {}}
	var ran []string
	job := func(held context.Context) error {
		ran = append(ran, e.holder(t))
		return held.Err()
	}
	var ny *watcher.NotYet
	if err := g.run(ctx, f, job); !errors.As(err, &ny) || ny.Waiting != waitingForSlot || ny.RetryIn <= 0 || len(ran) > 0 {
		t.Fatalf("run with the slot held elsewhere = %v (ran %v); want NotYet for %q at once", err, ran, waitingForSlot)
	}
	local := watcher.File{Root: t.TempDir(), Path: "l.tar"}
	if err := g.run(ctx, local, job); err != nil || len(ran) != 1 || ran[0] != "other" {
		t.Fatalf("run of a local file = %v (ran with holder %v); want run at once", err, ran)
	}
	ws := watcher.Status{Files: []watcher.FileStatus{{Path: "sub/a.tar", Waiting: waitingForSlot}}}
	if s := g.status(ws); !slices.Equal(s.WaitingForSlot, []string{"sub/a.tar"}) || len(s.Imports) != 1 || !s.Imports[0].Waiting {
		t.Errorf("status while a.tar waits = %+v; want it waiting", s)
	}
	if s := g.status(watcher.Status{}); len(s.WaitingForSlot) != 0 || s.Imports[0].Waiting {
		t.Errorf("status once the watcher forgot a.tar = %+v; want nothing waiting", s)
	}

	releaseOther()
	if err := g.run(ctx, f, job); err != nil || len(ran) != 2 || ran[1] != "me" {
		t.Fatalf("run after the slot was released = %v (holders seen %v); want run holding it", err, ran)
	}
	imp := g.status(ws).Imports[0]
	if imp.Waiting || imp.AcquiredAt.IsZero() || imp.ReleasedAt.Before(imp.AcquiredAt) || e.holder(t) != "" {
		t.Errorf("after the job: %+v, slot held by %q; want acquired then released", imp, e.holder(t))
	}
}

// acquire tries s until it holds a slot or ctx ends, as the watcher retries
// a file that waits for one, calling waiting after each try that found none.
func acquire(ctx context.Context, s slots, waiting func(error)) (context.Context, func(), error) {
	for {
		held, release, err := s.TryAcquire(ctx)
		if held != nil {
			return held, release, nil
		}
		waiting(err)
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(s.RetryDelay()):
		}
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
