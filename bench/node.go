package main

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// The single-node cluster of case 14, started as e2e/k8s starts it.

// The node's pod network, apart from e2e/k8s's.
const (
	podBridge = "imagedrop-bench"
	podSubnet = "10.244.78.0/24"
)

// clusterTB is harness.TB for the benchmark: Fatal and Fatalf panic with a
// clusterFatal, which catch turns back into an error; cleanups run, last
// first, when the node stops.
type clusterTB struct {
	logf     func(format string, args ...any)
	cleanups []func()
	errs     []error
	failed   bool
}

var _ harness.TB = (*clusterTB)(nil)

type clusterFatal struct{ err error }

func (t *clusterTB) Helper()                           {}
func (t *clusterTB) Logf(format string, args ...any)   { t.logf(format, args...) }
func (t *clusterTB) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }
func (t *clusterTB) Failed() bool                      { return t.failed }
func (t *clusterTB) Fatal(args ...any)                 { t.fatal(errors.New(fmt.Sprint(args...))) }
func (t *clusterTB) Fatalf(format string, args ...any) { t.fatal(fmt.Errorf(format, args...)) }

func (t *clusterTB) Errorf(format string, args ...any) {
	t.failed = true
	t.errs = append(t.errs, fmt.Errorf(format, args...))
}

func (t *clusterTB) fatal(err error) {
	t.failed = true
	panic(clusterFatal{err})
}

// catch runs f and returns the error of a Fatal in it.
func (t *clusterTB) catch(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(clusterFatal)
			if !ok {
				panic(r)
			}
			err = fe.err
		}
	}()
	f()
	return nil
}

// cleanup runs the cleanups, last first, and returns the errors reported
// meanwhile and before.
func (t *clusterTB) cleanup() error {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		if err := t.catch(t.cleanups[i]); err != nil {
			t.errs = append(t.errs, err)
		}
	}
	t.cleanups = nil
	return errors.Join(t.errs...)
}

// podNode is a single-node cluster on a containerd of its own.
type podNode struct {
	e *runtimeEnv // the node's containerd, its CRI on
	k *harness.Kubernetes
	t *clusterTB
}

// startNode starts a containerd from bin with its CRI and a bridge network,
// imports the sandbox images of b.in.sandbox into k8s.io with imagedrop, and
// starts a single-node cluster on it (e2e/k8s's startNode, without the
// shared mount a DaemonSet needs). Stop it with stop.
func (b *bench) startNode(ctx context.Context, bin string) (*podNode, error) {
	cfg, err := harness.FindKubernetes()
	if err != nil {
		return nil, err
	}
	e, err := startRuntime(ctx, bin, "")
	if err != nil {
		return nil, err
	}
	n := &podNode{e: e, t: &clusterTB{logf: b.logf}}
	n.t.Cleanup(func() {
		if n.t.failed {
			b.logf("--- node containerd log (tail) ---\n%s", tail(e.c.Logs(), 4000))
		}
		e.stop()
	})
	err = harness.WriteCNIConfig(filepath.Join(e.c.Dir, "cni"), filepath.Join(e.c.Dir, "cni-leases"), podBridge, podSubnet)
	if err == nil {
		err = b.importInto(ctx, e, b.in.sandbox)
	}
	if err != nil {
		_ = n.stop(true)
		return nil, err
	}
	removeIfMade := harness.MadeDirs("/var/lib/cni/results", "/var/lib/cni")
	n.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.c.RemovePodSandboxes(ctx); err != nil {
			n.t.Errorf("remove pods: %v", err)
		}
		if err := harness.RemoveBridge(podBridge); err != nil {
			n.t.Errorf("%v", err)
		}
		removeIfMade()
	})
	err = n.t.catch(func() {
		n.k = harness.StartKubernetes(n.t, harness.KubernetesConfig{BinDir: cfg.BinDir, Etcd: cfg.Etcd, ContainerdAddress: e.c.Address})
	})
	if err != nil {
		_ = n.stop(true)
		return nil, fmt.Errorf("start the cluster: %w", err)
	}
	return n, nil
}

// stop stops the cluster and its containerd and removes what they made;
// failed logs the tails of their logs first.
func (n *podNode) stop(failed bool) error {
	n.t.failed = n.t.failed || failed
	return n.t.cleanup()
}

// importInto imports archive into e's k8s.io namespace with imagedrop
// import (unpacked and pinned).
func (b *bench) importInto(ctx context.Context, e *runtimeEnv, archive string) error {
	out, err := exec.CommandContext(ctx, b.cfg.imagedrop, "import", "--containerd-address", e.c.Address, "--namespace", criNamespace, archive).CombinedOutput()
	if err != nil {
		return fmt.Errorf("imagedrop import %s: %w\n%s", archive, err, tail(string(out), 2000))
	}
	return nil
}

// snapshotCount is how many overlayfs snapshots k8s.io holds.
func (n *podNode) snapshotCount(ctx context.Context) (int, error) {
	count := 0
	err := n.e.client.SnapshotService("overlayfs").Walk(namespaces.WithNamespace(ctx, criNamespace), func(context.Context, snapshots.Info) error {
		count++
		return nil
	})
	return count, err
}

// generatePod builds the pause program of e2e/k8s, and writes the archive
// of the sandbox images (that program under kubelet's and containerd's
// sandbox image names) and case 14's image: that program as entrypoint,
// under two layers of -pod-size data in all.
func (b *bench) generatePod() error {
	if _, err := harness.FindKubernetes(); err != nil {
		return fmt.Errorf("case pod (make setup builds the cluster; -cases leaves the case out): %w", err)
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		return fmt.Errorf("case pod: %w", err)
	}
	pause, err := harness.BuildStatic(b.work, "./e2e/k8s/testdata/pause")
	if err != nil {
		return err
	}
	data, err := os.ReadFile(pause)
	if err != nil {
		return err
	}
	layer := harness.Layer(harness.File{Name: "pause", Mode: 0o755, Data: data})
	cfg := ocispec.ImageConfig{Entrypoint: []string{"/pause"}, Env: []string{"PATH=/"}}
	var sandboxes []*harness.Image
	for _, name := range harness.SandboxImages() {
		sandboxes = append(sandboxes, harness.NewImageFromLayers(name, runtime.GOOS+"/"+runtime.GOARCH, cfg, layer))
	}
	b.in.sandbox = filepath.Join(b.work, "sandbox.tar")
	f, err := os.Create(b.in.sandbox)
	if err != nil {
		return err
	}
	err = harness.WriteDockerSave(f, sandboxes...)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	b.in.pod = filepath.Join(b.work, "pod.tar")
	return writeDockerSave(b.in.pod, archiveSpec{name: podImage, seed: 14, layers: 2, size: b.cfg.podSize, bin: pause})
}

// podImage is case 14's image, as its archive names it.
const podImage = "example.com/imagedrop-bench/pod:1"

// writeBinaryLayer writes a layer holding the file bin at /NAME,
// executable, and returns its digest and its name in the archive.
func writeBinaryLayer(tw *tar.Writer, bin string) (digest.Digest, string, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", "", err
	}
	layer := harness.Layer(harness.File{Name: filepath.Base(bin), Mode: 0o755, Data: data})
	sum := sha256.Sum256(layer)
	name := hex.EncodeToString(sum[:]) + "/layer.tar"
	return digest.NewDigestFromBytes(digest.SHA256, sum[:]), name, writeTarFile(tw, name, layer)
}

// clusterLock takes the lock every run of a cluster on this host holds
// (flock(2) on path, as flock(1) takes it), waiting for it while ctx lasts;
// "" takes none, for a caller that holds it already. The returned function
// releases it.
func (b *bench) clusterLock(ctx context.Context, path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("cluster lock: %w", err)
	}
	for waited := false; ; waited = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("cluster lock %s: %w", path, err)
		}
		if !waited {
			b.logf("waiting for %s, held by another run of a cluster (-cluster-lock '' if this run's caller holds it)", path)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
