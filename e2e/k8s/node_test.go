package k8s

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// node is a single-node cluster on a private containerd 2.x, with the
// node's images and state directories for imagedrop.
type node struct {
	c                   *harness.Containerd
	k                   *harness.Kubernetes
	imagesDir, stateDir string
}

// startNode starts containerd with its CRI and a bridge network, imports
// the pause images and the archives with the imagedrop binary (into the
// CRI's namespace), and starts the cluster on it. Everything is stopped and
// removed when the test ends.
func startNode(ctx context.Context, t *testing.T, work, imagedropBin string, archives ...string) *node {
	t.Helper()
	pauseBin := buildStatic(t, work, "./e2e/k8s/testdata/pause")
	var pauses []*harness.Image
	for _, name := range pauseImages {
		pauses = append(pauses, runnableImage(t, name, "pause", pauseBin))
	}
	archives = append(archives, writeDockerSave(t, filepath.Join(work, "pause.tar"), pauses...))

	c, err := harness.StartContainerd(ctx, containerd2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- containerd log (tail) ---\n%s", lastLines(c.Logs(), 60))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop containerd: %v", err)
		}
	})
	shareMount(t, c.Dir)
	writeCNIConfig(t, filepath.Join(c.Dir, "cni"), t.TempDir())
	args := append([]string{"import", "--containerd-address", c.Address, "--namespace", criNamespace}, archives...)
	if out, err := exec.CommandContext(ctx, imagedropBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("imagedrop import: %v\n%s", err, out)
	}

	removeIfMade := harness.MadeDirs("/var/lib/cni/results", "/var/lib/cni")
	n := &node{c: c, imagesDir: t.TempDir(), stateDir: t.TempDir()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.RemovePodSandboxes(ctx); err != nil {
			t.Errorf("remove pods: %v", err)
		}
		removeBridge(t)
		removeIfMade()
	})
	cfg, err := harness.FindKubernetes()
	if err != nil {
		t.Fatal(err)
	}
	n.k = harness.StartKubernetes(t, harness.KubernetesConfig{BinDir: cfg.BinDir, Etcd: cfg.Etcd, ContainerdAddress: c.Address})
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := n.k.Kubectl(context.Background(), nil, "describe", "pods", "-A")
			t.Logf("--- kubectl describe pods -A ---\n%s", out)
			out, _ = n.k.Kubectl(context.Background(), nil, "get", "events", "-A")
			t.Logf("--- events ---\n%s", out)
			t.Logf("--- imagedrop pod logs ---\n%s", lastLines(podLogs(n.k.Dir, "imagedrop"), 80))
		}
	})
	return n
}
