package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// EnvKubernetesBin names the directory holding kube-apiserver,
// kube-controller-manager, kube-scheduler and kubelet; e2e/setup.sh builds
// them into DefaultKubernetesBin.
const EnvKubernetesBin = "IMAGEDROP_TEST_K8S_BIN"

// DefaultKubernetesBin is where e2e/setup.sh caches the Kubernetes binaries.
const DefaultKubernetesBin = "/var/cache/imagedrop/k8s-build/bin"

// kubernetesPrograms are the programs of a node besides etcd and containerd.
var kubernetesPrograms = [...]string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"}

// KubernetesConfig says which binaries to run against which containerd.
type KubernetesConfig struct {
	// BinDir holds kube-apiserver, kube-controller-manager, kube-scheduler
	// and kubelet.
	BinDir string
	// Etcd is the etcd binary.
	Etcd string
	// ContainerdAddress is the socket of the containerd kubelet uses (its
	// CRI plugin on, with a CNI configuration).
	ContainerdAddress string
	// KubeletFlags are added to kubelet's command line, e.g.
	// --register-with-taints.
	KubeletFlags []string
}

// FindKubernetes returns the configuration of the installed binaries, or an
// error naming what is missing.
func FindKubernetes() (KubernetesConfig, error) {
	cfg := KubernetesConfig{BinDir: os.Getenv(EnvKubernetesBin)}
	if cfg.BinDir == "" {
		cfg.BinDir = DefaultKubernetesBin
	}
	var missing []string
	for _, p := range kubernetesPrograms {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, p)); err != nil {
			missing = append(missing, filepath.Join(cfg.BinDir, p))
		}
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		missing = append(missing, "etcd")
	}
	cfg.Etcd = etcd
	if len(missing) > 0 {
		return cfg, fmt.Errorf("missing %s (run e2e/setup.sh, or set %s)", strings.Join(missing, ", "), EnvKubernetesBin)
	}
	return cfg, nil
}

// Kubernetes is a private single-node cluster: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kubelet, all on 127.0.0.1 with
// free ports, their data in one temporary directory.
type Kubernetes struct {
	Dir        string
	Kubeconfig string // admin kubeconfig (token in group system:masters)
	Server     string // https://127.0.0.1:PORT
	NodeName   string

	t       TB
	token   string
	procs   []*process
	sysctls map[string][]byte // kernel tunables kubelet changes, to restore
	// kubelet links container logs into /var/log/containers, whatever its
	// configuration; the directory is removed at the end if kubelet made it.
	madeLogLinkDir bool
}

const logLinkDir = "/var/log/containers"

// process is one component of the cluster.
type process struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan error
}

// StartKubernetes starts a single-node cluster on the containerd of cfg and
// waits until the node is Ready. Everything is stopped when the test ends;
// the pods kubelet left behind are the caller's to remove from containerd
// (see RemovePodSandboxes), after the cluster has stopped.
func StartKubernetes(t TB, cfg KubernetesConfig) *Kubernetes {
	t.Helper()
	k := newKubernetes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k.startAPIServer(ctx, t, cfg)
	dir := k.Dir
	bin := func(name string) string { return filepath.Join(cfg.BinDir, name) }

	kcmAddr, schedAddr := freeAddr(t), freeAddr(t)
	_, kcmPort, _ := net.SplitHostPort(kcmAddr)
	_, schedPort, _ := net.SplitHostPort(schedAddr)
	k.start(t, "kube-controller-manager", bin("kube-controller-manager"),
		"--kubeconfig", k.Kubeconfig,
		"--leader-elect=false",
		"--service-account-private-key-file", filepath.Join(dir, "sa.key"),
		"--bind-address", "127.0.0.1", "--secure-port", kcmPort,
		"--cert-dir", filepath.Join(dir, "pki", "kcm"),
		"--flex-volume-plugin-dir", filepath.Join(dir, "volume-plugins"),
		"--profiling=false")
	k.start(t, "kube-scheduler", bin("kube-scheduler"),
		"--kubeconfig", k.Kubeconfig,
		"--leader-elect=false",
		"--bind-address", "127.0.0.1", "--secure-port", schedPort,
		"--cert-dir", filepath.Join(dir, "pki", "scheduler"),
		"--profiling=false")

	healthzAddr := freeAddr(t)
	if err := k.writeKubeletConfig(cfg.ContainerdAddress, freeAddr(t), healthzAddr); err != nil {
		t.Fatal(err)
	}
	k.saveSysctls()
	if _, err := os.Stat(logLinkDir); errors.Is(err, os.ErrNotExist) {
		k.madeLogLinkDir = true
	}
	k.start(t, "kubelet", bin("kubelet"), append([]string{
		"--kubeconfig", k.Kubeconfig,
		"--config", filepath.Join(dir, "kubelet.yaml"),
		"--root-dir", filepath.Join(dir, "kubelet"),
		"--cert-dir", filepath.Join(dir, "pki", "kubelet"),
		"--hostname-override", k.NodeName}, cfg.KubeletFlags...)...)
	k.waitHTTP(ctx, t, "kube-controller-manager", "https://"+kcmAddr+"/healthz")
	k.waitHTTP(ctx, t, "kube-scheduler", "https://"+schedAddr+"/healthz")
	k.waitHTTP(ctx, t, "kubelet", "http://"+healthzAddr+"/healthz")
	k.waitNodeReady(ctx, t)
	return k
}

func (k *Kubernetes) writeFiles() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	files := map[string][]byte{
		"sa.key":     pemKey,
		"tokens.csv": fmt.Appendf(nil, "%s,admin,admin,\"system:masters\"\n", k.token),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(k.Dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (k *Kubernetes) writeKubeconfig() error {
	k.Kubeconfig = filepath.Join(k.Dir, "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: local
  context:
    cluster: local
    user: admin
current-context: local
`, k.Server, k.token)
	return os.WriteFile(k.Kubeconfig, []byte(cfg), 0o600)
}

// writeKubeletConfig writes a configuration for a throwaway node: cgroupfs
// on cgroup v1, no eviction or image GC, no authentication of its own API
// (it listens on 127.0.0.1 only), pod logs in the cluster's directory.
func (k *Kubernetes) writeKubeletConfig(containerd, serverAddr, healthzAddr string) error {
	_, port, _ := net.SplitHostPort(serverAddr)
	_, healthzPort, _ := net.SplitHostPort(healthzAddr)
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
address: 127.0.0.1
port: %s
healthzBindAddress: 127.0.0.1
healthzPort: %s
readOnlyPort: 0
evictionHard: {}
imageGCHighThresholdPercent: 100
enforceNodeAllocatable: []
localStorageCapacityIsolation: false
podLogsDir: %s
volumePluginDir: %s
`, containerd, port, healthzPort, filepath.Join(k.Dir, "pod-logs"), filepath.Join(k.Dir, "volume-plugins"))
	return os.WriteFile(filepath.Join(k.Dir, "kubelet.yaml"), []byte(cfg), 0o644)
}

// start runs one component, its output in a log file in the cluster's
// directory; it dies with the test binary.
func (k *Kubernetes) start(t TB, name, bin string, args ...string) {
	t.Helper()
	p := &process{name: name, log: filepath.Join(k.Dir, name+".log"), exited: make(chan error, 1)}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := startTied(p.cmd, p.exited); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	k.procs = append(k.procs, p)
}

// waitHTTP waits until url answers 200, failing the test if the component
// exits or the context ends first.
func (k *Kubernetes) waitHTTP(ctx context.Context, t TB, name, url string) {
	t.Helper()
	var p *process
	for _, q := range k.procs {
		if q.name == name {
			p = q
		}
	}
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // self-signed test cluster
	}
	defer client.CloseIdleConnections()
	var last error
	for {
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("%s exited during start: %v\n%s", name, err, tail(p.log, 40))
		case <-ctx.Done():
			t.Fatalf("%s not ready: %v (last: %v)\n%s", name, ctx.Err(), last, tail(p.log, 40))
		case <-time.After(100 * time.Millisecond):
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+k.token)
		resp, err := client.Do(req)
		if err != nil {
			last = err
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		last = fmt.Errorf("%s: %d %s", url, resp.StatusCode, bytes.TrimSpace(body))
	}
}

func (k *Kubernetes) waitNodeReady(ctx context.Context, t TB) {
	t.Helper()
	for {
		out, err := k.Kubectl(ctx, nil, "get", "node", k.NodeName,
			"-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err == nil && strings.TrimSpace(out) == "True" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node %s not Ready: %v (%s)", k.NodeName, ctx.Err(), out)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Kubectl runs kubectl against the cluster with stdin and returns its
// standard output; the error carries its standard error.
func (k *Kubernetes) Kubectl(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", k.Kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(errb.Bytes()))
	}
	return out.String(), nil
}

// Logs returns what a component ("kubelet", "kube-apiserver", …) wrote.
func (k *Kubernetes) Logs(name string) string {
	b, _ := os.ReadFile(filepath.Join(k.Dir, name+".log"))
	return string(b)
}

// stop ends the components in reverse order, kubelet first, restores the
// kernel tunables kubelet set, detaches the mounts kubelet made below its
// root directory and removes the cluster's directory.
func (k *Kubernetes) stop() {
	for i := len(k.procs) - 1; i >= 0; i-- {
		p := k.procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	}
	k.restoreSysctls()
	k.removeLogLinks()
	// kubelet bind-mounts its root directory onto itself (rshared); the
	// volumes of its pods are mounted below it. (StartAPIServer has none.)
	if _, err := os.Stat(filepath.Join(k.Dir, "kubelet")); err == nil {
		if err := syscall.Unmount(filepath.Join(k.Dir, "kubelet"), syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			k.t.Errorf("unmount kubelet root: %v", err)
		}
	}
	if err := os.RemoveAll(k.Dir); err != nil {
		k.t.Errorf("remove cluster directory: %v", err)
	}
}

// removeLogLinks removes kubelet's links to the logs of this cluster's
// containers, and their directory if kubelet made it.
func (k *Kubernetes) removeLogLinks() {
	entries, _ := os.ReadDir(logLinkDir)
	for _, e := range entries {
		p := filepath.Join(logLinkDir, e.Name())
		if dst, err := os.Readlink(p); err == nil && strings.HasPrefix(dst, k.Dir+string(filepath.Separator)) {
			_ = os.Remove(p)
		}
	}
	if k.madeLogLinkDir {
		_ = os.Remove(logLinkDir) // only if empty
	}
}

// kubelet sets these at start (protectKernelDefaults: false); the test puts
// the host's values back.
var kubeletSysctls = [...]string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

func (k *Kubernetes) saveSysctls() {
	k.sysctls = map[string][]byte{}
	for _, s := range kubeletSysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil {
			k.sysctls[s] = b
		}
	}
}

func (k *Kubernetes) restoreSysctls() {
	for s, b := range k.sysctls {
		if cur, err := os.ReadFile("/proc/sys/" + s); err == nil && !bytes.Equal(cur, b) {
			if err := os.WriteFile("/proc/sys/"+s, b, 0o644); err != nil {
				k.t.Logf("restore %s: %v", s, err)
			}
		}
	}
}

// RemovePodSandboxes stops and removes every pod sandbox (and so its
// containers and network) through containerd's CRI, as kubelet would: for
// cleaning up after a cluster has stopped.
func (c *Containerd) RemovePodSandboxes(ctx context.Context) error {
	conn, err := grpc.NewClient("unix://"+c.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("cri client: %w", err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list pod sandboxes: %w", err)
	}
	var errs []error
	for _, sb := range list.GetItems() {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("stop pod sandbox %s: %w", sb.GetMetadata().GetName(), err))
			continue
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("remove pod sandbox %s: %w", sb.GetMetadata().GetName(), err))
		}
	}
	return errors.Join(errs...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
