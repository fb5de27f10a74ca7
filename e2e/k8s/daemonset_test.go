package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

const (
	// containerd2 is where e2e/setup.sh builds containerd 2.x.
	containerd2 = "/var/cache/imagedrop/containerd-v2.4.2/bin/containerd"
	// criNamespace is the containerd namespace of the CRI, and so of kubelet.
	criNamespace = "k8s.io"

	imagedropImage = "ghcr.io/imagedrop/imagedrop:e2e"
	helloImage     = "example.com/imagedrop-e2e/hello:1"
	pinnedLabel    = "io.cri-containerd.pinned"
)

// The sandbox image kubelet 1.37 asks for, and containerd 2.x's default.
var pauseImages = harness.SandboxImages()

// TestDaemonSet deploys deploy/ with kubectl apply -k on a single-node
// cluster whose containerd is private to the test, running the image archive
// `make image` builds (imported onto the node with imagedrop import), waits
// for the imagedrop pod to be Ready, drops an archive into the node's images directory and
// runs a pod from the image imagedrop imported, with imagePullPolicy Never;
// then uninstalls it as README.md says (deploy/unpin first): no image keeps
// imagedrop's pin or source label, and every image stays.
func TestDaemonSet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kubernetes node: not with -short")
	}
	cfg, err := harness.FindKubernetes()
	if err == nil {
		_, err = os.Stat(containerd2)
	}
	if err == nil {
		_, err = exec.LookPath("kubectl")
	}
	if err == nil && os.Geteuid() != 0 {
		err = errors.New("kubelet and containerd need root")
	}
	if err != nil {
		if harness.InCI() {
			t.Fatalf("a Kubernetes node is required under CI: %v", err)
		}
		t.Skipf("cannot start a Kubernetes node: %v", err)
	}
	timings := newTimings(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()

	// The imagedrop image as `make image` builds it; the node's other
	// images built in code around static binaries.
	work := t.TempDir()
	imagedropBin := buildStatic(t, work, "./cmd/imagedrop")
	repo, tag, _ := strings.Cut(imagedropImage, ":")
	idArchive, idIndex, err := harness.BuildImageArchive(work, repo, tag, "v0.0.0-e2e")
	if err != nil {
		t.Fatal(err)
	}
	pauseBin := buildStatic(t, work, "./e2e/k8s/testdata/pause")
	helloBin := buildStatic(t, work, "./e2e/k8s/testdata/hello")
	var pauses []*harness.Image
	for _, name := range pauseImages {
		pauses = append(pauses, runnableImage(t, name, "pause", pauseBin))
	}
	pauseArchive := writeDockerSave(t, filepath.Join(work, "pause.tar"), pauses...)
	hello := runnableImage(t, helloImage, "hello", helloBin)
	timings.mark("build binaries and images")

	// containerd 2.x with its CRI, a bridge network, and the images a node
	// needs before any pod runs, imported by imagedrop itself.
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
	if out, err := exec.CommandContext(ctx, imagedropBin, "import", "--containerd-address", c.Address, "--namespace", criNamespace,
		pauseArchive, idArchive).CombinedOutput(); err != nil {
		t.Fatalf("imagedrop import: %v\n%s", err, out)
	}
	client := c.Client(t)
	cctx := namespaces.WithNamespace(ctx, criNamespace)
	if img, err := client.ImageService().Get(cctx, imagedropImage); err != nil || img.Target.Digest.String() != idIndex {
		t.Fatalf("%s after import: %+v, %v; want the archive's image index %s", imagedropImage, img.Target, err, idIndex)
	}
	timings.mark("start containerd, import pause and the make image archive")

	// libcni's cache, which containerd's CNI library keeps outside its
	// configuration; removed at the end if the test made it.
	removeIfMade := harness.MadeDirs("/var/lib/cni/results", "/var/lib/cni")
	// The node's images and state directories, removed after the pods.
	imagesDir, stateDir := t.TempDir(), t.TempDir()
	// The app's archive, held until the test has seen its pod wait.
	release := holdFile(t, filepath.Join(imagesDir, "app.tar"), harness.DockerSaveBytes(runnableImage(t, appImage, "pause", pauseBin)))
	// After the cluster has stopped (cleanups run last first): remove the
	// pods kubelet leaves running, with their network, through the CRI.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.RemovePodSandboxes(ctx); err != nil {
			t.Errorf("remove pods: %v", err)
		}
		removeBridge(t)
		removeIfMade()
	})
	k := harness.StartKubernetes(t, harness.KubernetesConfig{BinDir: cfg.BinDir, Etcd: cfg.Etcd, ContainerdAddress: c.Address,
		KubeletFlags: []string{"--register-with-taints", startupTaint + ":NoSchedule"}})
	timings.mark("start etcd, control plane and kubelet; node Ready")

	// The DaemonSet, as deploy/ has it, pointed at the test's directories.
	port := freePort(t)
	overlay := writeOverlay(t, overlayConfig{
		containerdDir: c.Dir, containerdSocket: filepath.Base(c.Address),
		imagesDir: imagesDir, stateDir: stateDir, port: port, kubeconfigDir: podKubeconfig(t, k),
	})
	if out, err := k.Kubectl(ctx, nil, "apply", "-k", overlay); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := k.Kubectl(context.Background(), nil, "describe", "pods", "-A")
			t.Logf("--- kubectl describe pods -A ---\n%s", out)
			out, _ = k.Kubectl(context.Background(), nil, "get", "events", "-A")
			t.Logf("--- events ---\n%s", out)
			t.Logf("--- imagedrop pod log ---\n%s", podLogs(k.Dir, "imagedrop"))
		}
	})
	testStartupTaint(ctx, t, k, release)
	timings.mark("startup taint: app Pending until the preload completed, then Available")
	var hostIP string // imagedrop listens on its node's IP only
	waitFor(ctx, t, "imagedrop pod Ready", func() error {
		var pods podList
		if err := getJSON(ctx, k, &pods, "-n", "imagedrop", "get", "pods", "-l", "app.kubernetes.io/name=imagedrop"); err != nil {
			return err
		}
		if len(pods.Items) != 1 {
			return fmt.Errorf("%d pods, want 1", len(pods.Items))
		}
		p := pods.Items[0]
		if !p.ready() {
			return fmt.Errorf("pod %s: phase %s, not Ready: %s", p.Metadata.Name, p.Status.Phase, p.waiting())
		}
		hostIP = p.Status.HostIP
		return nil
	})
	timings.mark("kubectl apply -k until the imagedrop pod is Ready")
	// The pod runs the archive's binary: the version it was built with.
	if m, err := getNode(ctx, hostIP, port, "/metrics"); err != nil || !strings.Contains(string(m), `version="v0.0.0-e2e"`) {
		t.Errorf("imagedrop_build_info of the pod: %v; want version v0.0.0-e2e\n%s", err, lastLines(grepLines(string(m), "build_info"), 5))
	}

	// An archive dropped onto the node (written under a hidden name and
	// renamed in, as rsync does) becomes a pinned image in the CRI's namespace.
	hidden := filepath.Join(imagesDir, ".hello.tar")
	writeDockerSave(t, hidden, hello)
	if err := os.Rename(hidden, filepath.Join(imagesDir, "hello.tar")); err != nil {
		t.Fatal(err)
	}
	dropped := time.Now()
	waitFor(ctx, t, "hello image in containerd, pinned", func() error {
		img, err := client.ImageService().Get(cctx, helloImage)
		if err != nil {
			return err
		}
		if got := img.Labels[pinnedLabel]; got != "pinned" {
			return fmt.Errorf("label %s = %q, want pinned", pinnedLabel, got)
		}
		return nil
	})
	t.Logf("archive dropped → image pinned in containerd: %s", time.Since(dropped).Round(time.Millisecond))
	timings.mark("drop archive until the image is in containerd")

	// A pod runs that image without pulling.
	podSpec := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"hello","namespace":"default"},
"spec":{"restartPolicy":"Never","automountServiceAccountToken":false,"terminationGracePeriodSeconds":1,
"containers":[{"name":"hello","image":%q,"imagePullPolicy":"Never"}]}}`, helloImage)
	// The admission of a pod needs the namespace's default service
	// account, which the controller manager creates shortly after start.
	waitFor(ctx, t, "hello pod created", func() error {
		_, err := k.Kubectl(ctx, []byte(podSpec), "create", "-f", "-")
		return err
	})
	waitFor(ctx, t, "hello pod Succeeded", func() error {
		var p pod
		if err := getJSON(ctx, k, &p, "-n", "default", "get", "pod", "hello"); err != nil {
			return err
		}
		switch p.Status.Phase {
		case "Succeeded":
			return nil
		case "Failed":
			t.Fatalf("hello pod failed: %s", p.waiting())
		}
		return fmt.Errorf("phase %s: %s", p.Status.Phase, p.waiting())
	})
	if got := podLogs(k.Dir, "hello"); !strings.Contains(got, "hello from an image imagedrop imported") {
		t.Errorf("hello pod log = %q, want its greeting", got)
	}
	timings.mark("create a pod with imagePullPolicy Never until it Succeeded")

	// /status on the node's port says what happened to the file.
	var st statusDoc
	if err := getStatus(ctx, hostIP, port, &st); err != nil {
		t.Fatal(err)
	}
	const file = "hello.tar" // relative to the images directory
	i := slices.IndexFunc(st.Files, func(f fileStatus) bool { return f.Path == file })
	switch {
	case !st.Ready:
		t.Errorf("/status ready = false, want true")
	case i < 0:
		t.Errorf("/status has no %s: %+v", file, st.Files)
	case st.Files[i].State != "done" || !slices.Contains(st.Files[i].Images, helloImage):
		t.Errorf("/status %s = %+v, want done with %s", file, st.Files[i], helloImage)
	}
	timings.mark("/status")

	// README's kustomize uninstall, on this node: no pin left, every image there.
	testKustomizeUninstall(ctx, t, &node{c: c, k: k}, overlay, writeUnpinOverlay(t, c.Dir, filepath.Base(c.Address)))
	timings.mark("kustomize uninstall (deploy/unpin, then delete -k deploy/)")
}

// buildStatic builds the package pkg (relative to the module root) as a
// static binary into dir.
func buildStatic(t *testing.T, dir, pkg string) string {
	t.Helper()
	out, err := harness.BuildStatic(dir, pkg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// runnableImage is a single-layer image of the static binary bin at /NAME,
// its entrypoint, with args as the default command.
func runnableImage(t *testing.T, ref, name, bin string, args ...string) *harness.Image {
	t.Helper()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	layer := harness.Layer(harness.File{Name: name, Mode: 0o755, Data: b})
	return harness.NewImageFromLayers(ref, runtime.GOOS+"/"+runtime.GOARCH,
		ocispec.ImageConfig{Entrypoint: []string{"/" + name}, Cmd: args, Env: []string{"PATH=/"}}, layer)
}

func writeDockerSave(t *testing.T, path string, imgs ...*harness.Image) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.WriteDockerSave(f, imgs...); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// shareMount makes dir a shared mount, as systemd makes / on a real node:
// the DaemonSet mounts the containerd directory with HostToContainer
// propagation, which the CRI allows only from a shared or slave mount.
func shareMount(t *testing.T, dir string) {
	t.Helper()
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		t.Fatalf("bind mount %s: %v", dir, err)
	}
	// Cleanups run last first: this one before containerd's Stop removes dir.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	if err := syscall.Mount("", dir, "", syscall.MS_SHARED|syscall.MS_REC, ""); err != nil {
		t.Fatalf("make %s shared: %v", dir, err)
	}
}

const bridgeName = "imagedrop-e2e"

// writeCNIConfig writes the pod network: a bridge with host-local addresses
// and port mappings, its address leases in ipamDir.
func writeCNIConfig(t *testing.T, confDir, ipamDir string) {
	t.Helper()
	if err := harness.WriteCNIConfig(confDir, ipamDir, bridgeName, "10.244.77.0/24"); err != nil {
		t.Fatal(err)
	}
}

// removeBridge deletes the bridge the CNI plugin made on the host.
func removeBridge(t *testing.T) {
	t.Helper()
	if err := harness.RemoveBridge(bridgeName); err != nil {
		t.Log(err)
	}
}

type overlayConfig struct {
	containerdDir, containerdSocket string
	imagesDir, stateDir             string
	port                            int
	kubeconfigDir                   string // holds the kubeconfig the pod reaches the API server with
}

// writeOverlay writes a kustomize overlay of deploy/ that runs the
// imagedrop image imported into the node, against the test's containerd and
// directories, on a free host port, with probes every second.
func writeOverlay(t *testing.T, c overlayConfig) string {
	t.Helper()
	dir := t.TempDir()
	name, tag, _ := strings.Cut(imagedropImage, ":")
	// kustomize takes a base outside the overlay, but only by relative path.
	base, err := filepath.Rel(dir, filepath.Join(moduleRoot(), "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %[1]s
images:
  - name: ghcr.io/imagedrop/imagedrop
    newName: %[2]s
    newTag: %[3]s
patches:
  - path: daemonset.yaml
  - target:
      kind: DaemonSet
      name: imagedrop
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/ports/0/containerPort
        value: %[4]d
      - op: replace
        path: /spec/template/metadata/annotations/prometheus.io~1port
        value: "%[4]d"
`, base, name, tag, c.port)
	daemonset := fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: imagedrop
  namespace: imagedrop
spec:
  template:
    spec:
      containers:
        - name: imagedrop
          imagePullPolicy: Never
          env:
            - name: IMAGEDROP_CONTAINERD_ADDRESS
              value: /run/containerd/%[1]s
            # Before its use: the patch's env entries come first.
            - name: HOST_IP
              valueFrom:
                fieldRef:
                  fieldPath: status.hostIP
            - name: IMAGEDROP_LISTEN_ADDRESS
              value: "$(HOST_IP):%[2]d"
            - name: IMAGEDROP_LOG_LEVEL
              value: debug
            - name: IMAGEDROP_KUBECONFIG
              value: /etc/imagedrop/kube/kubeconfig
            - name: IMAGEDROP_NODE_STATUS_INTERVAL
              value: 1s
          volumeMounts:
            - name: kubeconfig
              mountPath: /etc/imagedrop/kube
              readOnly: true
          startupProbe:
            periodSeconds: 1
          readinessProbe:
            periodSeconds: 1
      volumes:
        - name: containerd
          hostPath:
            path: %[3]s
        # The test's containerd keeps its root beside its socket.
        - name: containerd-root
          hostPath:
            path: %[3]s/root
        - name: images
          hostPath:
            path: %[4]s
        - name: state
          hostPath:
            path: %[5]s
        - name: kubeconfig
          hostPath:
            path: %[6]s
        - name: containerd-root
          hostPath:
            path: %[3]s/root
`, c.containerdSocket, c.port, c.containerdDir, c.imagesDir, c.stateDir, c.kubeconfigDir)
	for n, s := range map[string]string{"kustomization.yaml": kustomization, "daemonset.yaml": daemonset} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The subset of the Pod API the test reads.
type (
	pod struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Status struct {
			Phase      string `json:"phase"`
			HostIP     string `json:"hostIP"`
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
			ContainerStatuses []struct {
				State map[string]struct {
					Reason   string `json:"reason"`
					Message  string `json:"message"`
					ExitCode int    `json:"exitCode"`
				} `json:"state"`
			} `json:"containerStatuses"`
		} `json:"status"`
	}
	podList struct {
		Items []pod `json:"items"`
	}
)

func (p pod) ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// waiting describes the state of the pod's containers.
func (p pod) waiting() string {
	var out []string
	for _, cs := range p.Status.ContainerStatuses {
		for state, s := range cs.State {
			out = append(out, fmt.Sprintf("%s %s %s (exit %d)", state, s.Reason, s.Message, s.ExitCode))
		}
	}
	return strings.Join(out, "; ")
}

func getJSON(ctx context.Context, k *harness.Kubernetes, v any, args ...string) error {
	out, err := k.Kubectl(ctx, nil, append(args, "-o", "json")...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

// podLogs returns the logs kubelet kept of the pods whose name contains
// name, read from the node (kubectl logs needs the kubelet's API).
func podLogs(clusterDir, name string) string {
	var b bytes.Buffer
	_ = filepath.WalkDir(filepath.Join(clusterDir, "pod-logs"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(path, name) {
			data, _ := os.ReadFile(path)
			b.Write(data)
		}
		return nil
	})
	return b.String()
}

type (
	fileStatus struct {
		Path   string   `json:"path"`
		State  string   `json:"state"`
		Images []string `json:"images"`
		Error  string   `json:"error"`
	}
	statusDoc struct {
		Ready bool         `json:"ready"`
		Files []fileStatus `json:"files"`
	}
)

func getStatus(ctx context.Context, host string, port int, v *statusDoc) error {
	b, err := getNode(ctx, host, port, "/status")
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("/status: %w\n%s", err, b)
	}
	return nil
}

// getNode GETs path from imagedrop's port on the node.
func getNode(ctx context.Context, host string, port int, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s%s", net.JoinHostPort(host, strconv.Itoa(port)), path), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %d %v %s", path, resp.StatusCode, err, b)
	}
	return b, nil
}

// waitFor polls cond every 250ms until it returns nil, failing the test
// with cond's last error when ctx ends first.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() error) {
	t.Helper()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v (last: %v)", what, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// timings logs how long each step of the test took.
type timings struct {
	t           *testing.T
	start, last time.Time
}

func newTimings(t *testing.T) *timings {
	now := time.Now()
	tm := &timings{t: t, start: now, last: now}
	t.Cleanup(func() { t.Logf("total, cleanup included: %s", time.Since(tm.start).Round(time.Millisecond)) })
	return tm
}

func (tm *timings) mark(step string) {
	now := time.Now()
	tm.t.Logf("%-60s %6.1fs (at %5.1fs)", step, now.Sub(tm.last).Seconds(), now.Sub(tm.start).Seconds())
	tm.last = now
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
