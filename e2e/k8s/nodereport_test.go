package k8s

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// TestNodeReporting runs imagedrop watch with --node-name against a real
// kube-apiserver (no kubelet: the Node objects are made by the test) with
// deploy/base applied, acting as the imagedrop ServiceAccount with a token
// bound to a Pod on its node, as the DaemonSet's pod does:
//   - the admission policy denies every change but imagedrop's own, on its
//     own Node;
//   - the condition goes Preloading → PreloadComplete, the startup taint and
//     nothing else goes, the label comes, Events say so, also while the API
//     server was down for a while (imports go on meanwhile);
//   - a bad file keeps the taint (keep) or not past the timeout
//     (remove-after), and its failures' Events are rate-limited.
func TestNodeReporting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd, kube-apiserver and containerd: not with -short")
	}
	cfg, err := harness.FindKubernetes()
	if err == nil {
		_, err = exec.LookPath("kubectl")
	}
	if err != nil {
		if harness.InCI() {
			t.Fatalf("kube-apiserver and kubectl are required under CI: %v", err)
		}
		t.Skipf("cannot start kube-apiserver: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	c, err := harness.StartContainerd(ctx, "")
	if err != nil {
		if harness.InCI() {
			t.Fatalf("containerd is required under CI: %v", err)
		}
		t.Skipf("containerd not available: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	bin, err := harness.BuildImagedrop(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	k := harness.StartAPIServer(t, cfg)
	if out, err := k.Kubectl(ctx, nil, "apply", "-k", filepath.Join(moduleRoot(), "deploy")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var vap struct {
		Status struct {
			TypeChecking struct {
				ExpressionWarnings []struct{ FieldRef, Warning string } `json:"expressionWarnings"`
			} `json:"typeChecking"`
		} `json:"status"`
	}
	waitFor(ctx, t, "admission policy type-checked", func() error {
		return getJSON(ctx, k, &vap, "get", "validatingadmissionpolicy", "imagedrop-own-node")
	})
	for _, w := range vap.Status.TypeChecking.ExpressionWarnings {
		t.Errorf("admission policy %s: %s", w.FieldRef, w.Warning)
	}
	for _, n := range []string{"node-a", "node-b", "node-c", "node-d"} {
		createNode(ctx, t, k, n)
	}
	env := nodeEnv{k: k, c: c, bin: bin}

	t.Run("admission", func(t *testing.T) { testNodeAdmission(ctx, t, k) })
	t.Run("preload with an outage", func(t *testing.T) { testPreloadOutage(ctx, t, env) })
	t.Run("failing file keeps the taint", func(t *testing.T) { testFailingKeep(ctx, t, env) })
	t.Run("failing files, taint timeout, rate-limited Events", func(t *testing.T) { testFailingTimeout(ctx, t, env) })
}

type nodeEnv struct {
	k   *harness.Kubernetes
	c   *harness.Containerd
	bin string
}

// watchNode starts imagedrop watch for node with images in dir.
func (e nodeEnv) watchNode(ctx context.Context, t *testing.T, node, ns, dir string, args ...string) *daemon {
	t.Helper()
	return startWatch(t, e.bin, append([]string{"--node-name", node, "--kubeconfig", serviceAccountKubeconfig(ctx, t, e.k, node),
		"--containerd-address", e.c.Address, "--namespace", ns, "--images-dir", dir,
		"--state-file", filepath.Join(t.TempDir(), "state.json"), "--containerd-root", e.c.Dir,
		"--node-status-interval", "1s", "--settle", "500ms", "--retry-min", "1s"}, args...)...)
}

// testNodeAdmission acts as imagedrop on node-a, with client-go as
// imagedrop does: what the policy lets it do succeeds, everything else is
// denied by the API server, naming the rule.
func testNodeAdmission(ctx context.Context, t *testing.T, k *harness.Kubernetes) {
	own := kubeClient(t, serviceAccountKubeconfig(ctx, t, k, "node-a"))
	unbound := kubeClient(t, serviceAccountKubeconfig(ctx, t, k, ""))
	nodes := own.CoreV1().Nodes()
	cond := func(typ string) []byte {
		return mustJSON(map[string]any{"status": map[string]any{"conditions": []map[string]string{
			{"type": typ, "status": "False", "reason": "Test", "message": "set by the test"}}}})
	}
	patchStatus := func(c kubernetes.Interface, node string, patch []byte) func() error {
		return func() error { _, err := c.CoreV1().Nodes().PatchStatus(ctx, node, patch); return err }
	}
	patch := func(node string, pt types.PatchType, patch string) func() error {
		return func() error { _, err := nodes.Patch(ctx, node, pt, []byte(patch), metav1.PatchOptions{}); return err }
	}
	event := func(node string) func() error {
		return func() error {
			_, err := own.CoreV1().Events("default").Create(ctx, &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{GenerateName: "imagedrop-"},
				InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: node, UID: types.UID(node)},
				Reason:         "Test", Message: "test", Type: corev1.EventTypeNormal, Source: corev1.EventSource{Component: "imagedrop"},
			}, metav1.CreateOptions{})
			return err
		}
	}
	for _, tt := range []struct {
		name    string
		do      func() error
		wantErr string // "" when allowed
	}{
		// First, so that the policy has been loaded for the others.
		{"another node's condition", patchStatus(own, "node-b", cond(conditionTyp)), "imagedrop may change only its own Node (node-a)"},
		{"own condition", patchStatus(own, "node-a", cond(conditionTyp)), ""},
		{"own node's Ready condition", patchStatus(own, "node-a", cond("Ready")), "imagedrop may only write the node condition ImagesPreloaded"},
		{"own node's capacity", patchStatus(own, "node-a", []byte(`{"status":{"capacity":{"cpu":"64"}}}`)),
			"imagedrop may only write the node condition ImagesPreloaded"},
		{"another node's startup taint", patch("node-b", types.JSONPatchType, `[{"op":"remove","path":"/spec/taints/0"}]`),
			"imagedrop may change only its own Node (node-a)"},
		{"another taint", patch("node-a", types.JSONPatchType, `[{"op":"remove","path":"/spec/taints/1"}]`),
			"imagedrop may only remove the taint imagedrop.io/preloading"},
		{"adding a taint", patch("node-a", types.JSONPatchType, `[{"op":"add","path":"/spec/taints/-","value":{"key":"x.io/y","effect":"NoExecute"}}]`),
			"imagedrop may only remove the taint imagedrop.io/preloading"},
		{"another label", patch("node-a", types.MergePatchType, `{"metadata":{"labels":{"`+otherLabel+`":"red"}}}`),
			"imagedrop may only set the label imagedrop.io/preloaded"},
		{"an annotation", patch("node-a", types.MergePatchType, `{"metadata":{"annotations":{"x.io/y":"z"}}}`), "imagedrop may not cordon the node or change its annotations"},
		{"cordon", patch("node-a", types.MergePatchType, `{"spec":{"unschedulable":true}}`), "imagedrop may not cordon the node"},
		{"its own label", patch("node-a", types.MergePatchType, `{"metadata":{"labels":{"`+preloadLabel+`":"false"}}}`), ""},
		{"an Event about another node", event("node-b"), "imagedrop may change only its own Node (node-a)"},
		{"an Event about its node", event("node-a"), ""},
		{"a token bound to no pod", patchStatus(unbound, "node-a", cond(conditionTyp)), "its token names no node"},
		{"deleting its node (RBAC)", func() error { return nodes.Delete(ctx, "node-a", metav1.DeleteOptions{}) }, "cannot delete resource"},
		{"reading secrets (RBAC)", func() error {
			_, err := own.CoreV1().Secrets("imagedrop").List(ctx, metav1.ListOptions{})
			return err
		}, "cannot list resource"},
	} {
		var err error
		waitFor(ctx, t, tt.name, func() error {
			if err = tt.do(); tt.wantErr != "" && err == nil {
				return fmt.Errorf("allowed")
			}
			return nil
		})
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v; want it allowed", tt.name, err)
		case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("%s: denied with %q; want %q", tt.name, err, tt.wantErr)
		}
	}
	n, err := getNodeObject(ctx, k, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	if !hasTaint(n, startupTaint) || !hasTaint(n, otherTaint) || n.Labels[otherLabel] != "blue" || n.Spec.Unschedulable || len(n.Annotations) > 0 {
		t.Errorf("node-a after the denials: taints %v, labels %v, annotations %v, unschedulable %v; want both taints, %s=blue, none, schedulable",
			n.Spec.Taints, n.Labels, n.Annotations, n.Spec.Unschedulable, otherLabel)
	}
	if c, _ := condition(n, "Ready"); c.Status != "True" {
		t.Errorf("node-a Ready condition = %+v, want True as the test set it", c)
	}
}

// testPreloadOutage: a file still being written holds the preload
// (Preloading, taint kept); the API server stops; the file completes and is
// imported meanwhile; when the API server is back, the condition, taint,
// label and Events catch up. Then a bad file makes it FilesFailing, and
// removing files an Event about the unpin.
func testPreloadOutage(ctx context.Context, t *testing.T, e nodeEnv) {
	ns := harness.Namespace(t)
	dir := t.TempDir()
	a := harness.NewImage("example.com/node/a:1", "linux/amd64", map[string]string{"a": "1"})
	b := harness.NewImage("example.com/node/b:1", "linux/amd64", map[string]string{"b": "2"})
	writeDockerSave(t, filepath.Join(dir, "a.tar"), a)
	growing := filepath.Join(dir, "b.tar")
	release := holdFile(t, growing, harness.DockerSaveBytes(b))
	d := e.watchNode(ctx, t, "node-a", ns, dir, "--node-label", preloadLabel+"=true")
	n := waitCondition(ctx, t, e.k, "node-a", "Preloading", "1 of 2 files done")
	if !hasTaint(n, startupTaint) {
		t.Errorf("node-a lost %s while preloading: %v", startupTaint, n.Spec.Taints)
	}

	start := e.k.StopAPIServer(t)
	release()
	client := e.c.Client(t)
	waitFor(ctx, t, "b imported with the API server down", func() error {
		_, err := client.ImageService().Get(namespaces.WithNamespace(ctx, ns), "example.com/node/b:1")
		return err
	})
	waitFor(ctx, t, "node update failures counted", func() error {
		v, err := d.metric(ctx, "imagedrop_node_update_pending")
		if err == nil && v != "1" {
			err = fmt.Errorf("imagedrop_node_update_pending %s, want 1", v)
		}
		return err
	})
	start(ctx)

	n = waitCondition(ctx, t, e.k, "node-a", "PreloadComplete", "2 files done")
	waitFor(ctx, t, "startup taint removed, label set", func() error {
		n, err := getNodeObject(ctx, e.k, "node-a")
		switch {
		case err != nil:
			return err
		case hasTaint(n, startupTaint) || n.Labels[preloadLabel] != "true":
			return fmt.Errorf("taints %v, labels %v", n.Spec.Taints, n.Labels)
		case !hasTaint(n, otherTaint) || n.Labels[otherLabel] != "blue":
			t.Fatalf("imagedrop changed what is not its own: taints %v, labels %v", n.Spec.Taints, n.Labels)
		}
		return nil
	})
	if c, _ := condition(n, "Ready"); c.Status != "True" {
		t.Errorf("Ready condition = %+v, want True as the test set it", c)
	}
	waitEvent(ctx, t, e.k, "node-a", "PreloadComplete", "2 files done")
	waitEvent(ctx, t, e.k, "node-a", "StartupTaintRemoved", "startup preload complete")
	if v, err := d.metric(ctx, "imagedrop_node_update_failures_total"); err != nil || v == "0" {
		t.Errorf("imagedrop_node_update_failures_total = %q, %v; want failures counted during the outage", v, err)
	}

	if err := os.WriteFile(filepath.Join(dir, ".bad.tar"), []byte("not an archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, ".bad.tar"), filepath.Join(dir, "bad.tar")); err != nil {
		t.Fatal(err)
	}
	waitCondition(ctx, t, e.k, "node-a", "FilesFailing", "1 of 3 files failing")
	waitEvent(ctx, t, e.k, "node-a", "FileFailed", "bad.tar: ")
	for _, f := range []string{"bad.tar", "a.tar"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	waitCondition(ctx, t, e.k, "node-a", "PreloadComplete", "1 files done")
	waitEvent(ctx, t, e.k, "node-a", "ImagesUnpinned", "1 image(s) unpinned")
}

// testFailingKeep: a bad file present at start, --taint-policy keep: the
// condition says FilesFailing, an Event says the taint stays, and it does.
func testFailingKeep(ctx context.Context, t *testing.T, e nodeEnv) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.tar.gz"), []byte("not gzip"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.watchNode(ctx, t, "node-b", harness.Namespace(t), dir, "--taint-policy", "keep")
	waitCondition(ctx, t, e.k, "node-b", "FilesFailing", "1 of 1 files failing")
	waitEvent(ctx, t, e.k, "node-b", "StartupTaintKept", "--taint-policy keep")
	waitEvent(ctx, t, e.k, "node-b", "PreloadFailed", "1 of 1 files failing")
	// The taint is removed in the same step that would send that Event;
	// the Event came, so it was decided to keep it.
	n, err := getNodeObject(ctx, e.k, "node-b")
	if err != nil {
		t.Fatal(err)
	}
	if !hasTaint(n, startupTaint) {
		t.Errorf("node-b taints %v, want %s kept", n.Spec.Taints, startupTaint)
	}
}

// testFailingTimeout: bad files present at start, --taint-policy
// remove-after: the taint goes at the timeout; the files' failure Events
// stop at --event-burst, and do not hold back the taint's Event.
func testFailingTimeout(ctx context.Context, t *testing.T, e nodeEnv) {
	dir := t.TempDir()
	const bad, burst = 8, 3
	for i := range bad {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("bad-%d.tar", i)), []byte("not an archive"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.watchNode(ctx, t, "node-c", harness.Namespace(t), dir,
		"--taint-policy", "remove-after", "--taint-timeout", "2s", "--event-burst", fmt.Sprint(burst))
	waitCondition(ctx, t, e.k, "node-c", "FilesFailing", fmt.Sprintf("%d of %d files failing", bad, bad))
	waitEvent(ctx, t, e.k, "node-c", "StartupTaintRemoved", "--taint-timeout 2s reached")
	n, err := getNodeObject(ctx, e.k, "node-c")
	if err != nil {
		t.Fatal(err)
	}
	if hasTaint(n, startupTaint) || !hasTaint(n, otherTaint) {
		t.Errorf("node-c taints %v, want only %s", n.Spec.Taints, otherTaint)
	}
	evs, err := nodeEvents(ctx, e.k, "node-c")
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, ev := range evs {
		if ev.Reason == "FileFailed" {
			failed += int(max(ev.Count, 1))
		}
	}
	// --event-rate (0.2 a minute) may add one during the test.
	if failed == 0 || failed > burst+1 {
		t.Errorf("%d FileFailed Events for %d failed files; want 1 to %d (--event-burst %d)", failed, bad, burst+1, burst)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal(ctx.Err())
	}
}
