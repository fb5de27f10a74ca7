package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// StartAPIServer starts etcd and kube-apiserver only, enough to create and
// validate objects (CRDs, custom resources): no controllers, no node. They
// are stopped when the test ends.
func StartAPIServer(t TB, cfg KubernetesConfig) *Kubernetes {
	t.Helper()
	k := newKubernetes(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k.startAPIServer(ctx, t, cfg)
	return k
}

// newKubernetes makes the cluster's directory and stops its components and
// removes the directory when the test ends.
func newKubernetes(t TB) *Kubernetes {
	t.Helper()
	// Short: kubelet and containerd make unix sockets below it.
	dir, err := os.MkdirTemp("", "idk8s-")
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	k := &Kubernetes{Dir: dir, NodeName: strings.ToLower(host), t: t, token: randomHex(16)}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range k.procs {
				t.Logf("--- %s log (tail) ---\n%s", p.name, tail(p.log, 60))
			}
		}
		k.stop()
	})
	return k
}

// startAPIServer starts etcd and kube-apiserver and writes the admin
// kubeconfig.
func (k *Kubernetes) startAPIServer(ctx context.Context, t TB, cfg KubernetesConfig) {
	t.Helper()
	dir := k.Dir
	if err := k.writeFiles(); err != nil {
		t.Fatal(err)
	}
	etcdAddr, peerAddr := freeAddr(t), freeAddr(t)
	k.start(t, "etcd", cfg.Etcd,
		"--name", "default",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", "http://"+etcdAddr, "--advertise-client-urls", "http://"+etcdAddr,
		"--listen-peer-urls", "http://"+peerAddr, "--initial-advertise-peer-urls", "http://"+peerAddr,
		"--initial-cluster", "default=http://"+peerAddr,
		"--log-level", "warn")
	k.waitHTTP(ctx, t, "etcd", "http://"+etcdAddr+"/health")

	apiAddr := freeAddr(t)
	k.Server = "https://" + apiAddr
	_, apiPort, _ := net.SplitHostPort(apiAddr)
	if err := k.writeKubeconfig(); err != nil {
		t.Fatal(err)
	}
	k.start(t, "kube-apiserver", filepath.Join(cfg.BinDir, "kube-apiserver"),
		"--etcd-servers", "http://"+etcdAddr,
		"--bind-address", "127.0.0.1", "--secure-port", apiPort,
		"--cert-dir", filepath.Join(dir, "pki", "apiserver"),
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--endpoint-reconciler-type", "none",
		"--enable-priority-and-fairness=false",
		"--profiling=false")
	k.waitHTTP(ctx, t, "kube-apiserver", k.Server+"/readyz")
}

// FindAPIServer returns the configuration of a control plane of etcd and
// kube-apiserver only, or an error naming what is missing.
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

// RequireAPIServer starts etcd and kube-apiserver only (StartAPIServer),
// for tests of API objects such as Leases. When the binaries are missing the
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
	return StartAPIServer(t, cfg)
}
