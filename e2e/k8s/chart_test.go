package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

const (
	// kubectlBin is the static kubectl e2e/setup.sh builds, packaged here
	// as the image of the chart's helm test (not of its uninstall).
	kubectlBin   = "/var/cache/imagedrop/bin/kubectl-v1.37.2"
	kubectlImage = "example.com/imagedrop-e2e/kubectl:1"
)

// TestChartLifecycle installs the Helm chart (flavour containerd, pointed at
// the test's containerd and directories) on a single-node cluster, waits
// for the pod to be Ready, copies an archive slowly into the node's images
// directory and runs a Pod from it with imagePullPolicy Never, as it does
// the image an image list of the values names on a registry (/metrics,
// scraped through the API server's proxy, counts the import), runs helm
// test, upgrades the release with a changed argument (the new pod skips the
// unchanged archive: /status and /metrics), and uninstalls it: the pre-delete hook
// releases every image, so none carries imagedrop's pin or source label,
// and every image is still there; the uninstall runs with no kubectl image
// on the node.
func TestChartLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kubernetes node: not with -short")
	}
	helm := requireHelm(t)
	requireNode(t, kubectlBin)
	timings := newTimings(t)
	ctx, cancel := context.WithTimeout(t.Context(), 7*time.Minute)
	defer cancel()

	work := t.TempDir()
	imagedropBin := buildStatic(t, work, "./cmd/imagedrop")
	hello := runnableImage(t, helloImage, "hello", buildStatic(t, work, "./e2e/k8s/testdata/hello"))
	// The imagedrop image as `make image` builds it.
	repo, tag, _ := strings.Cut(imagedropImage, ":")
	idArchive, _, err := harness.BuildImageArchive(work, repo, tag, "v0.0.0-e2e")
	if err != nil {
		t.Fatal(err)
	}
	kubectlArchive := writeDockerSave(t, filepath.Join(work, "kubectl.tar"), runnableImage(t, kubectlImage, "kubectl", kubectlBin))
	n := startNode(ctx, t, work, imagedropBin, idArchive, kubectlArchive)
	// An image on a registry, named by an image list in the chart's values.
	reg := harness.RequireRegistry(t)
	reg.Push(t, "e2e/listed:1", hello)
	listed := reg.Host + "/e2e/listed:1"
	timings.mark("build images, start containerd and the cluster")

	port := freePort(t)
	values := filepath.Join(work, "values.yaml")
	if err := os.WriteFile(values, []byte(chartTestValues(t, n, port, listed)), 0o644); err != nil {
		t.Fatal(err)
	}
	helmEnv := []string{"KUBECONFIG=" + n.k.Kubeconfig}
	// The uninstall's wait Job (imagedrop's own image) reaches the API server
	// on 127.0.0.1 with the test's kubeconfig, as uninstall.kubeconfigSecret.
	for _, args := range [][]string{{"create", "namespace", "imagedrop"},
		{"-n", "imagedrop", "create", "secret", "generic", "imagedrop-e2e-kubeconfig", "--from-file=kubeconfig=" + n.k.Kubeconfig}} {
		if out, err := n.k.Kubectl(ctx, nil, args...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	release := []string{"imagedrop", chartDir, "--namespace", "imagedrop", "-f", values, "--wait", "--timeout", "3m"}
	if out, err := runHelm(ctx, t, helm, helmEnv, append([]string{"install", "--create-namespace"}, release...)...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	first := readyPod(ctx, t, n.k, "")
	timings.mark("helm install --wait until the imagedrop pod is Ready")
	// Ready means the preload is done: the listed image was pulled.
	runPod(ctx, t, n.k, "listed", listed)
	timings.mark("a Pod with imagePullPolicy Never runs the listed image")

	// An archive copied slowly, in place, into the node's images directory.
	archive := filepath.Join(work, "hello.tar")
	writeDockerSave(t, archive, hello)
	slowCopy(ctx, t, archive, filepath.Join(n.imagesDir, "hello.tar"))
	waitPinned(ctx, t, n, helloImage)
	runPod(ctx, t, n.k, "hello", helloImage)
	if got := archivesProcessed(ctx, t, n.k, first, port); got["success"] != 1 {
		t.Errorf("/metrics of %s through the API server: archives processed %v, want 1 success", first, got)
	}
	timings.mark("slow copy until a Pod with imagePullPolicy Never ran it")

	if out, err := runHelm(ctx, t, helm, helmEnv, "test", "imagedrop", "--namespace", "imagedrop", "--timeout", "2m"); err != nil {
		t.Errorf("helm test: %v\n%s", err, out)
	}
	timings.mark("helm test")

	// An upgrade with a changed argument: a new pod, the same state.
	if out, err := runHelm(ctx, t, helm, helmEnv, append([]string{"upgrade", "--set", "extraArgs={--settle=2s}"}, release...)...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	second := readyPod(ctx, t, n.k, first)
	checkUpgraded(ctx, t, n, second, port)
	timings.mark("helm upgrade until the new pod is Ready, state re-used")

	// The uninstall needs no image but imagedrop's: kubectl goes first.
	cctx := namespaces.WithNamespace(ctx, criNamespace)
	if err := n.c.Client(t).ImageService().Delete(cctx, kubectlImage, images.SynchronousDelete()); err != nil {
		t.Fatalf("delete %s: %v", kubectlImage, err)
	}
	before, err := n.c.Client(t).ImageService().List(cctx)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runHelm(ctx, t, helm, helmEnv, "uninstall", "imagedrop", "--namespace", "imagedrop", "--wait", "--timeout", "3m"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	checkUninstalled(ctx, t, n, before)
	timings.mark("helm uninstall (pre-delete unpin on the node)")
}

// chartTestValues points the chart at the test's containerd and
// directories, the images imported onto the node, a free host port, probes
// every second, and has kubectl (helm test) and the uninstall's wait Job
// talk to the API server on 127.0.0.1 (the cluster has no kube-proxy for
// the in-cluster Service).
func chartTestValues(t *testing.T, n *node, port int, listed string) string {
	t.Helper()
	b, err := os.ReadFile(n.k.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*token: (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no token in the kubeconfig")
	}
	repo, tag, _ := strings.Cut(imagedropImage, ":")
	return fmt.Sprintf(`flavour: containerd
containerd: {socketDir: %q, socket: %q, root: %q}
imagesDir: %q
stateDir: %q
port: %d
listenHost: ""
image: {repository: %q, tag: %q, pullPolicy: Never}
env:
  - {name: IMAGEDROP_LOG_LEVEL, value: debug}
startupProbe: {periodSeconds: 1, failureThreshold: 120}
readinessProbe: {periodSeconds: 1}
lists:
  listed.txt: |
    %s
uninstall: {hostNetwork: true, kubeconfigSecret: imagedrop-e2e-kubeconfig}
kubectl:
  image: %q
  pullPolicy: Never
  command: [/kubectl]
  hostNetwork: true
  extraArgs: [--server=%s, --insecure-skip-tls-verify, --token=%s]
`, n.c.Dir, filepath.Base(n.c.Address), filepath.Join(n.c.Dir, "root"), n.imagesDir, n.stateDir, port, repo, tag, listed, kubectlImage, n.k.Server, m[1])
}

// readyPod waits for the one imagedrop pod, other than not, to be Ready and
// returns its name.
func readyPod(ctx context.Context, t *testing.T, k *harness.Kubernetes, not string) string {
	t.Helper()
	var name string
	waitFor(ctx, t, "imagedrop pod Ready", func() error {
		var pods podList
		if err := getJSON(ctx, k, &pods, "-n", "imagedrop", "get", "pods", "-l", "app.kubernetes.io/name=imagedrop"); err != nil {
			return err
		}
		if len(pods.Items) != 1 {
			return fmt.Errorf("%d pods, want 1", len(pods.Items))
		}
		p := pods.Items[0]
		if p.Metadata.Name == not || !p.ready() {
			return fmt.Errorf("pod %s: phase %s, ready %v: %s", p.Metadata.Name, p.Status.Phase, p.ready(), p.waiting())
		}
		name = p.Metadata.Name
		return nil
	})
	return name
}

// slowCopy copies src to dst in place, in 8 pieces 200ms apart, as a slow
// scp would: imagedrop must wait until the file stops changing.
func slowCopy(ctx context.Context, t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const pieces = 8
	for i := range pieces {
		if _, err := f.Write(b[i*len(b)/pieces : (i+1)*len(b)/pieces]); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// runPod runs image (the hello program) in a Pod called name with
// imagePullPolicy Never until it succeeds, and checks its greeting.
func runPod(ctx context.Context, t *testing.T, k *harness.Kubernetes, name, image string) {
	t.Helper()
	podSpec := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"namespace":"default"},
"spec":{"restartPolicy":"Never","automountServiceAccountToken":false,"terminationGracePeriodSeconds":1,
"containers":[{"name":"hello","image":%q,"imagePullPolicy":"Never"}]}}`, name, image)
	waitFor(ctx, t, name+" pod created", func() error {
		_, err := k.Kubectl(ctx, []byte(podSpec), "create", "-f", "-")
		return err
	})
	waitFor(ctx, t, name+" pod Succeeded", func() error {
		var p pod
		if err := getJSON(ctx, k, &p, "-n", "default", "get", "pod", name); err != nil {
			return err
		}
		switch p.Status.Phase {
		case "Succeeded":
			return nil
		case "Failed":
			t.Fatalf("%s pod failed: %s", name, p.waiting())
		}
		return fmt.Errorf("phase %s: %s", p.Status.Phase, p.waiting())
	})
	if got := podLogs(k.Dir, "default_"+name+"_"); !strings.Contains(got, "hello from an image imagedrop imported") {
		t.Errorf("%s pod log = %q, want its greeting", name, got)
	}
}

// fileAttempts is the part of a file's /status the upgrade check reads.
type fileAttempts struct {
	Path     string   `json:"path"`
	State    string   `json:"state"`
	Attempts int      `json:"attempts"`
	Images   []string `json:"images"`
}

var processedRE = regexp.MustCompile(`(?m)^imagedrop_files_processed_total\{kind="archive",result="(\w+)"\} (\S+)$`)

// archivesProcessed scrapes the pod's /metrics through the API server's
// proxy and returns imagedrop_files_processed_total{kind="archive"} by result.
func archivesProcessed(ctx context.Context, t *testing.T, k *harness.Kubernetes, pod string, port int) map[string]float64 {
	t.Helper()
	out, err := k.Kubectl(ctx, nil, "get", "--raw", fmt.Sprintf("/api/v1/namespaces/imagedrop/pods/%s:%d/proxy/metrics", pod, port))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, m := range processedRE.FindAllStringSubmatch(out, -1) {
		var v float64
		if _, err := fmt.Sscan(m[2], &v); err != nil {
			t.Fatalf("/metrics: %q: %v", m[0], err)
		}
		got[m[1]] = v
	}
	return got
}

// requireNode skips the test, or fails it under CI, unless a Kubernetes
// node can be started here (with the extra files given).
func requireNode(t *testing.T, extra ...string) {
	t.Helper()
	_, err := harness.FindKubernetes()
	for _, p := range append([]string{containerd2}, extra...) {
		if err == nil {
			_, err = os.Stat(p)
		}
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
}

// waitPinned waits until the image is in the node's containerd, pinned.
func waitPinned(ctx context.Context, t *testing.T, n *node, name string) {
	t.Helper()
	client := n.c.Client(t)
	cctx := namespaces.WithNamespace(ctx, criNamespace)
	waitFor(ctx, t, name+" in containerd, pinned", func() error {
		img, err := client.ImageService().Get(cctx, name)
		if err != nil {
			return err
		}
		if got := img.Labels[pinnedLabel]; got != "pinned" {
			return fmt.Errorf("label %s = %q, want pinned", pinnedLabel, got)
		}
		return nil
	})
}

// checkUpgraded checks the pod of the upgraded release: its new argument,
// and the archive done from the state file, not processed again (/status:
// no attempt in this run; /metrics: skipped, no success).
func checkUpgraded(ctx context.Context, t *testing.T, n *node, pod string, port int) {
	t.Helper()
	if args, err := n.k.Kubectl(ctx, nil, "-n", "imagedrop", "get", "pod", pod, "-o", "jsonpath={.spec.containers[0].args}"); err != nil || !strings.Contains(args, "--settle=2s") {
		t.Errorf("upgraded pod %s has args %s (%v), want --settle=2s", pod, args, err)
	}
	// /status of the new pod: hello.tar done, from the state file, not
	// processed again (no attempts in this run).
	var st struct {
		Files []fileAttempts `json:"files"`
	}
	b, err := getNode(ctx, "127.0.0.1", port, "/status") // listenHost "": every address
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(st.Files, func(f fileAttempts) bool { return f.Path == "hello.tar" })
	switch {
	case i < 0:
		t.Errorf("/status of the upgraded pod has no hello.tar: %+v", st.Files)
	case st.Files[i].State != "done" || st.Files[i].Attempts != 0 || !slices.Contains(st.Files[i].Images, helloImage):
		t.Errorf("/status of the upgraded pod: hello.tar = %+v, want done, 0 attempts (skipped as unchanged), with %s", st.Files[i], helloImage)
	}
	if got := archivesProcessed(ctx, t, n.k, pod, port); got["success"] != 0 || got["skipped"] != 1 {
		t.Errorf("/metrics of the upgraded pod %s: archives processed %v, want 1 skipped and no success", pod, got)
	}
}

// checkUninstalled checks the node's containerd after an uninstall: every
// image of before still there with its target, none with imagedrop's
// source label or pin, and no workload left.
func checkUninstalled(ctx context.Context, t *testing.T, n *node, before []images.Image) {
	t.Helper()
	cctx := namespaces.WithNamespace(ctx, criNamespace)
	after, err := n.c.Client(t).ImageService().List(cctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{helloImage, imagedropImage} {
		if !slices.ContainsFunc(before, func(b images.Image) bool { return b.Name == want && b.Labels[importer.LabelSource] != "" }) {
			t.Fatalf("before uninstall, %s has no %s: nothing to prove", want, importer.LabelSource)
		}
	}
	for _, img := range before {
		j := slices.IndexFunc(after, func(a images.Image) bool { return a.Name == img.Name })
		if j < 0 {
			t.Errorf("image %s is gone after uninstall", img.Name)
			continue
		}
		if a := after[j]; a.Target.Digest != img.Target.Digest {
			t.Errorf("image %s changed target: %s → %s", img.Name, img.Target.Digest, a.Target.Digest)
		}
	}
	// The CRI pins its sandbox image itself (and pins it again when an
	// image event touches it): that pin is not imagedrop's.
	sandbox := slices.IndexFunc(after, func(a images.Image) bool { return a.Name == pauseImages[0] })
	for _, img := range after {
		if v, ok := img.Labels[importer.LabelSource]; ok {
			t.Errorf("after uninstall, image %s still has %s=%s", img.Name, importer.LabelSource, v)
		}
		criPinned := sandbox >= 0 && img.Target.Digest == after[sandbox].Target.Digest
		if _, ok := img.Labels[importer.LabelPinned]; ok && !criPinned {
			t.Errorf("after uninstall, image %s is still pinned", img.Name)
		}
	}
	waitFor(ctx, t, "no workload left after uninstall", func() error {
		out, err := n.k.Kubectl(ctx, nil, "get", "daemonsets,jobs,pods", "-n", "imagedrop", "-o", "name")
		if err == nil && strings.TrimSpace(out) != "" {
			err = fmt.Errorf("left: %s", strings.Join(strings.Fields(out), " "))
		}
		return err
	})
}
