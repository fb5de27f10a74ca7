package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// FindAPIServer returns the kube-apiserver directory and etcd binary of the
// installed Kubernetes, or an error naming what is missing.
func FindAPIServer() (KubernetesConfig, error) {
	cfg := KubernetesConfig{BinDir: os.Getenv(EnvKubernetesBin)}
	if cfg.BinDir == "" {
		cfg.BinDir = DefaultKubernetesBin
	}
	if _, err := os.Stat(filepath.Join(cfg.BinDir, "kube-apiserver")); err != nil {
		return cfg, fmt.Errorf("missing kube-apiserver: %w (run e2e/setup.sh, or set %s)", err, EnvKubernetesBin)
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		return cfg, fmt.Errorf("missing etcd: %w (run e2e/setup.sh)", err)
	}
	cfg.Etcd = etcd
	return cfg, nil
}

// RequireAPIServer starts a Kubernetes control plane of etcd and
// kube-apiserver only (no nodes, no controllers: enough for API objects such
// as Leases), stopped when the test ends. When the binaries are missing the
// test is skipped, or fails under CI.
func RequireAPIServer(t testing.TB) *Kubernetes {
	t.Helper()
	cfg, err := FindAPIServer()
	if err != nil {
		if InCI() {
			t.Fatalf("kube-apiserver is required under CI: %v", err)
		}
		t.Skip(err)
	}
	dir, err := os.MkdirTemp("", "idapi-")
	if err != nil {
		t.Fatal(err)
	}
	k := &Kubernetes{Dir: dir, t: t, token: randomHex(16)}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range k.procs {
				t.Logf("--- %s log (tail) ---\n%s", p.name, tail(p.log, 40))
			}
		}
		k.stop()
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k.startAPIServer(ctx, t, cfg.Etcd, cfg.BinDir)
	return k
}
